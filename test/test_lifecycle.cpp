// Lifecycles at the edges: resizing, refusals that own their pool, destructors called from the
// object's own task, timeouts of any length, worker stacks, blocked submitters, fork(). Each
// test's name states the promise it checks.

#include <gtest/gtest.h>
#include <pthread.h>   // for pthread_getattr_np, pthread_attr_getstacksize
#include <sys/wait.h>  // for waitpid, WIFEXITED, WEXITSTATUS, WIFSIGNALED, WTERMSIG
#include <unistd.h>    // for fork, _exit, alarm, gettid

#include <array>      // for std::array
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <fstream>    // for std::ifstream
#include <latch>      // for std::latch
#include <limits>     // for std::numeric_limits
#include <memory>     // for std::make_shared, std::shared_ptr
#include <set>        // for std::set
#include <stdexcept>  // for std::invalid_argument
#include <string>     // for std::string, std::to_string
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "finishes_within.hpp"
#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "tidepool/tidepool.hpp"

#if defined(__SANITIZE_THREAD__)
#define TIDEPOOL_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TIDEPOOL_TEST_TSAN 1
#endif
#endif
#if defined(TIDEPOOL_TEST_TSAN)
// The fork test's child starts a new pool; ThreadSanitizer would end a child that starts threads
// after a multithreaded fork() unless told that the test knows what it does.
extern "C" const char* __tsan_default_options() { return "die_after_fork=0"; }
#endif

namespace {

using namespace std::chrono_literals;
using tidepool::pool;
using tidepool::pool_options;
using tidepool::subpool;
using tidepool::task_group;
using tidepool::pool_metrics;
using tidepool::testing::finishes_within;
using tidepool::testing::with_workers;

// ---------------------------------------------------------------------------------------------
// Resizing

TEST(Lifecycle, AfterAShrinkReturnsEveryNewTaskRunsOnTheRemainingWorker) {
  // Surplus workers that are still searching for work when resize() returns must not run what
  // is submitted next. Each round leaves every worker searching at the moment of the shrink.
  for (int round = 0; round < 30; ++round) {
    pool p(with_workers(3));
    std::atomic<int> warm{0};
    for (int i = 0; i < 300; ++i) p.go([&] { warm.fetch_add(1); });
    while (warm.load() < 300) {
    }
    p.resize(1);
    std::vector<tidepool::task<std::thread::id>> tasks;
    for (int i = 0; i < 60; ++i) tasks.push_back(p.submit([] { return std::this_thread::get_id(); }));
    std::set<std::thread::id> threads;
    for (auto& t : tasks) threads.insert(t.get());
    ASSERT_EQ(threads.size(), 1U) << "round " << round;
  }
}

TEST(Lifecycle, ResizeAfterStopThrowsPoolStopped) {
  pool p(with_workers(2));
  p.stop();
  EXPECT_THROW(p.resize(3), tidepool::pool_stopped);
  EXPECT_THROW(p.resize(1), tidepool::pool_stopped);
  EXPECT_EQ(p.workers(), 2U);
  pool drained(with_workers(1));
  drained.stop_and_wait();
  EXPECT_THROW(drained.resize(2), tidepool::pool_stopped);
}

// ---------------------------------------------------------------------------------------------
// Refusals whose callable owns the pool

TEST(Lifecycle, ARefusedTaskHoldingTheLastReferenceToItsStoppedPoolDoesNotHang) {
  EXPECT_TRUE(finishes_within(20s, [] {
    auto owner = std::make_shared<pool>(with_workers(1));
    owner->stop();
    pool& p = *owner;
    // The capture is the pool's last owner: destroying the refused callable destroys the pool.
    EXPECT_THROW(p.go([keep = std::move(owner)] {}), tidepool::pool_stopped);
  }));
}

TEST(Lifecycle, ARefusedTaskHoldingTheLastReferenceToItsFullPoolDoesNotHang) {
  EXPECT_TRUE(finishes_within(20s, [] {
    pool_options o = with_workers(1);
    o.queue_capacity = 0;
    auto owner = std::make_shared<pool>(o);
    std::latch running(1);
    owner->go([&running] {
      running.count_down();
      std::this_thread::sleep_for(50ms);  // the pool's destructor waits for this one
    });
    running.wait();
    pool& p = *owner;
    EXPECT_FALSE(p.try_submit([keep = std::move(owner)] {}).has_value());
  }));
}

// ---------------------------------------------------------------------------------------------
// Destructors called from the object's own task

// `make(p)` creates, with new, an object (a subpool, a task_group) whose tasks run one at a time
// on `p`, in submission order. One of its tasks deletes it, with tasks queued before and after.
template <class Make>
void delete_from_own_task_and_expect_every_accepted_task_ran(std::size_t workers, Make make) {
  pool p(with_workers(workers));
  std::atomic<int> ran{0};
  std::latch gate(1);
  std::latch deleted(1);
  auto* owner = make(p);
  owner->go([&] { gate.wait(); });  // holds the only slot until everything below is accepted
  for (int i = 0; i < 20; ++i) owner->go([&] { ran.fetch_add(1); });
  owner->go([&] {
    delete owner;  // cannot wait for this very task
    deleted.count_down();
  });
  for (int i = 0; i < 20; ++i) owner->go([&] { ran.fetch_add(1); });  // queued behind the delete
  gate.count_down();
  deleted.wait();
  p.stop_and_wait();
  EXPECT_EQ(ran.load(), 40);
  EXPECT_EQ(p.metrics().succeeded, 42U);
}

TEST(Lifecycle, ASubpoolDeletedFromOneOfItsOwnTasksReturnsAndStillRunsEveryAcceptedTask) {
  EXPECT_TRUE(finishes_within(20s, [] {
    delete_from_own_task_and_expect_every_accepted_task_ran(2, [](pool& p) { return new subpool(p, 1); });
  }));
}

TEST(Lifecycle, ASubpoolWhoseLastOwnerIsItsOwnTaskIsFreedByItsLastTask) {
  EXPECT_TRUE(finishes_within(20s, [] {
    pool p(with_workers(2));
    std::atomic<int> ran{0};
    {
      auto outer = std::make_shared<subpool>(p, 2);
      auto inner = std::make_shared<subpool>(*outer, 1);
      for (int i = 0; i < 50; ++i) inner->go([&ran, keep = inner] { ran.fetch_add(1); });
      for (int i = 0; i < 50; ++i) outer->go([&ran, keep = outer] { ran.fetch_add(1); });
      // The subpools' last owners are now their tasks' captures (LeakSanitizer checks that the
      // last one to finish frees each of them). `inner` goes first: it must not outlive `outer`.
      inner.reset();
      outer.reset();
    }
    p.stop_and_wait();
    EXPECT_EQ(ran.load(), 100);
  }));
}

TEST(Lifecycle, AGroupDeletedFromOneOfItsOwnTasksReturnsAndStillRunsEveryAcceptedTask) {
  EXPECT_TRUE(finishes_within(20s, [] {
    // One worker: the group's tasks, submitted from outside, start in submission order.
    delete_from_own_task_and_expect_every_accepted_task_ran(1, [](pool& p) { return new task_group(p); });
  }));
}

TEST(Lifecycle, AGroupWhoseLastOwnerIsItsOwnTaskIsFreedByItsLastTaskWhetherItRunsOrIsSkipped) {
  EXPECT_TRUE(finishes_within(20s, [] {
    pool p(with_workers(2));
    std::atomic<int> ran{0};
    auto running = std::make_shared<task_group>(p);
    auto stopped = std::make_shared<task_group>(p);
    stopped->stop();  // its tasks are skipped: their captures die in the skip
    for (int i = 0; i < 50; ++i) {
      running->go([&ran, keep = running] { ran.fetch_add(1); });
      stopped->go([&ran, keep = stopped] { ran.fetch_add(1); });
    }
    // The groups' last owners are now their tasks' captures (LeakSanitizer checks that the
    // last one to finish frees each group's state).
    running.reset();
    stopped.reset();
    p.stop_and_wait();
    EXPECT_EQ(ran.load(), 50);
    const pool_metrics m = p.metrics();
    EXPECT_EQ(m.succeeded, 50U);
    EXPECT_EQ(m.cancelled, 50U);
  }));
}

TEST(Lifecycle, AGroupOnASubpoolWhoseLastOwnerIsItsOwnTaskStillPassesEveryTaskOnToTheSubpool) {
  EXPECT_TRUE(finishes_within(20s, [] {
    pool p(with_workers(2));
    std::atomic<int> ran{0};
    {
      subpool sub(p, 1);
      auto group = std::make_shared<task_group>(sub);
      for (int i = 0; i < 50; ++i) group->go([&ran, keep = group] { ran.fetch_add(1); });
      group.reset();
    }  // ~subpool waits for every task that the group passed on to it
    EXPECT_EQ(ran.load(), 50);
    p.stop_and_wait();
    EXPECT_EQ(p.metrics().succeeded, 50U);
  }));
}

TEST(Lifecycle, AForkJoinGroupWhoseLastOwnerIsItsOwnTaskDoesNotHang) {
  EXPECT_TRUE(finishes_within(20s, [] {
    pool p(with_workers(2));
    std::atomic<int> ran{0};
    p.submit([&] {
      // From inside a task: the group's tasks go onto this worker's deque.
      auto group = std::make_shared<task_group>(p);
      for (int i = 0; i < 50; ++i) group->go([&ran, keep = group] { ran.fetch_add(1); });
      group.reset();
    }).get();
    p.stop_and_wait();
    EXPECT_EQ(ran.load(), 50);
    EXPECT_EQ(p.metrics().succeeded, 51U);
  }));
}

// ---------------------------------------------------------------------------------------------
// Timeouts

TEST(Lifecycle, WaitForTheLongestDurationOfAnyUnitMeansForever) {
  pool p(with_workers(1));
  const auto slow = [] {
    std::this_thread::sleep_for(5ms);
    return 3;
  };
  auto hours = p.submit(slow);
  EXPECT_TRUE(hours.wait_for(std::chrono::hours::max()));
  auto seconds = p.submit(slow);
  EXPECT_TRUE(seconds.wait_for(std::chrono::seconds::max()));
  auto millis = p.submit(slow);
  EXPECT_TRUE(millis.wait_for(std::chrono::milliseconds::max()));
  auto infinite = p.submit(slow);
  EXPECT_TRUE(infinite.wait_for(std::chrono::duration<double>(std::numeric_limits<double>::infinity())));
  auto huge = p.submit(slow);
  EXPECT_TRUE(huge.wait_for(std::chrono::duration<double, std::ratio<86400>>(1e300)));
  EXPECT_EQ(hours.get() + seconds.get() + millis.get() + infinite.get() + huge.get(), 15);
}

TEST(Lifecycle, WaitForTheMostNegativeDurationTimesOutAtOnce) {
  pool p(with_workers(1));
  std::latch release(1);
  auto t = p.submit([&] { release.wait(); });
  EXPECT_FALSE(t.wait_for(std::chrono::hours::min()));
  EXPECT_FALSE(t.wait_for(std::chrono::duration<double>(-std::numeric_limits<double>::infinity())));
  EXPECT_FALSE(t.wait_for(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())));
  release.count_down();
  t.get();
}

// ---------------------------------------------------------------------------------------------
// Worker stacks

constexpr std::size_t large_stack = std::size_t{64} << 20;

pool_options with_large_stacks(std::size_t workers) {
  pool_options o = with_workers(workers);
  o.stack_size = large_stack;
  return o;
}

TEST(Lifecycle, WorkersRunOnStacksOfTheRequestedSize) {
  pool p(with_large_stacks(2));
  auto size = p.submit([] {
    pthread_attr_t attributes;
    std::size_t bytes = 0;
    if (pthread_getattr_np(pthread_self(), &attributes) == 0) {
      pthread_attr_getstacksize(&attributes, &bytes);
      pthread_attr_destroy(&attributes);
    }
    return bytes;
  });
  EXPECT_GE(size.get(), large_stack);
}

struct sixteen_mib {
  std::array<unsigned char, std::size_t{16} << 20> bytes;
};

TEST(Lifecycle, ATaskReturningASixteenMiBObjectRunsOnAWorkerWithALargerStack) {
  pool p(with_large_stacks(1));
  // The result is built on the worker's stack, then moved into the task.
  auto big = p.submit([] {
    sixteen_mib r;
    r.bytes.fill(7);
    return r;
  });
  // Read it on a worker too: the test's own thread has the default 8 MiB stack.
  auto check = p.submit([&big] {
    const sixteen_mib r = big.get();
    return r.bytes.front() == 7 && r.bytes[r.bytes.size() / 2] == 7 && r.bytes.back() == 7;
  });
  EXPECT_TRUE(check.get());
}

TEST(Lifecycle, AStackSizeBelowTheSystemsMinimumIsRejected) {
  pool_options o = with_workers(1);
  o.stack_size = 1024;
  EXPECT_THROW(pool{o}, std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Blocked submitters

long voluntary_context_switches(pid_t thread) {
  std::ifstream status("/proc/self/task/" + std::to_string(thread) + "/status");
  std::string key;
  while (status >> key) {
    if (key == "voluntary_ctxt_switches:") {
      long n = 0;
      status >> n;
      return n;
    }
  }
  return -1;
}

TEST(Lifecycle, AThreadBlockedOnAFullSubpoolSleepsUntilASlotFrees) {
  pool p(with_workers(2));
  tidepool::subpool_options o;
  o.queue_capacity = 0;
  subpool sub(p, 1, o);
  tidepool::testing::occupied_workers busy(sub, 1);
  std::atomic<pid_t> blocked_thread{0};
  std::atomic<bool> accepted{false};
  std::thread blocked([&] {
    blocked_thread.store(gettid());
    sub.go([] {});
    accepted.store(true);
  });
  while (blocked_thread.load() == 0) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);  // long enough to be blocked
  const long before = voluntary_context_switches(blocked_thread.load());
  std::this_thread::sleep_for(300ms);
  const long after = voluntary_context_switches(blocked_thread.load());
  ASSERT_GE(before, 0);
  // Polling every millisecond would wake it ~300 times; sleeping until a slot frees, not at all.
  EXPECT_LT(after - before, 10) << "the blocked submitter keeps waking up";
  EXPECT_FALSE(accepted.load());
  busy.release();
  blocked.join();
  EXPECT_TRUE(accepted.load());
}

// ---------------------------------------------------------------------------------------------
// fork()

// What the child checks, one bit per broken promise (its exit status).
int check_in_child(pool& parents, pool* parents_default) {
  int broken = 0;
  const std::uint64_t dropped = parents.metrics().dropped;
  try {
    parents.go([] {});
    broken |= 1;
  } catch (const tidepool::error& e) {
    if (std::string(e.what()).find("pool used in a child process after fork()") == std::string::npos) broken |= 2;
  }
  try {
    static_cast<void>(parents.submit([] { return 1; }));
    broken |= 1;
  } catch (const tidepool::used_after_fork&) {
  }
  if (parents.try_submit([] {}).has_value()) broken |= 4;
  {
    subpool sub(parents, 1);
    try {
      sub.go([] {});
      broken |= 8;
    } catch (const tidepool::used_after_fork&) {
    }
  }
  if (parents.metrics().dropped != dropped + 4) broken |= 16;
  try {
    parents.resize(3);
    broken |= 32;
  } catch (const tidepool::used_after_fork&) {
  }
  pool& fresh = tidepool::default_pool();
  if (&fresh == parents_default) broken |= 64;
  if (tidepool::submit([] { return 7; }).get() != 7) broken |= 64;
  // Its task is still running in the parent and more are queued there: nothing to wait for here.
  parents.stop_and_wait();
  delete &parents;
  return broken;
}

TEST(Lifecycle, AfterForkTheChildRefusesTheParentsPoolsAndGetsAFreshDefaultPool) {
  auto* parents = new pool(with_workers(2));
  // Both of the parent's workers are inside a task and 9 more tasks are queued when it forks. They
  // block rather than sleep: a parent thread inside malloc at the moment of fork() leaves the
  // child's allocator locked under AddressSanitizer (its allocator has no fork handlers in g++ 12 /
  // clang 14; glibc's malloc has), and the child's fresh pool would hang allocating. No parent
  // thread allocates once both workers block and the default pool's workers have parked.
  std::atomic<int> started{0};
  std::latch release(1);
  for (int i = 0; i < 11; ++i) {
    parents->go([&] {
      started.fetch_add(1);
      started.notify_all();
      release.wait();
    });
  }
  for (int seen = started.load(); seen < 2; seen = started.load()) started.wait(seen);
  pool* parents_default = &tidepool::default_pool();
  EXPECT_EQ(tidepool::submit([] { return 1; }).get(), 1);
  std::this_thread::sleep_for(100ms);  // a worker with nothing to do parks within 200 µs (parking.cpp)

  const pid_t child = fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    alarm(60);  // a hang in the child ends it with SIGALRM
    _exit(check_in_child(*parents, parents_default));
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status)) << "the child was killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << " (SIGALRM: it hung)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promises broken in the child (bits, see check_in_child)";

  release.count_down();
  parents->stop_and_wait();
  EXPECT_EQ(parents->metrics().succeeded, 11U);  // the parent's pool is untouched by the fork
  delete parents;
}

}  // namespace
