// Start order and starvation: what pool.hpp promises about when an accepted task starts.
//   * Tasks submitted by one thread start in submission order: exactly on one worker; on N
//     workers no task starts more than one global batch (32) ahead of an earlier one.
//   * Every accepted task starts within a bounded number of starts on each worker, whatever the
//     workers run: chained tasks with parallel_for inside, fork-join trees, nested groups,
//     helping waits.

#include <gtest/gtest.h>

#include <algorithm>  // for std::max, std::any_of
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cstdint>    // for std::uint64_t
#include <cstdio>     // for std::printf
#include <functional> // for std::function
#include <memory>     // for std::make_shared
#include <stdexcept>  // for std::runtime_error
#include <thread>     // for std::this_thread
#include <vector>     // for std::vector

#include "occupied_workers.hpp"
#include "pool_options_for_tests.hpp"
#include "stress_config.hpp"
#include "tidepool/tidepool.hpp"

namespace tidepool {
namespace {

using namespace std::chrono_literals;
using testing::occupied_workers;
using testing::stress_count;
using testing::with_workers;
using clock_type = std::chrono::steady_clock;

constexpr std::size_t global_batch = 32;  // pool.hpp: how far ahead of an earlier task one may start

// Records the order in which tasks start.
class start_log {
 public:
  explicit start_log(std::size_t n) : order_(n), position_(0) {}
  void started(std::size_t task) { order_[position_.fetch_add(1)] = task; }
  [[nodiscard]] std::size_t count() const { return position_.load(); }
  [[nodiscard]] const std::vector<std::size_t>& order() const { return order_; }

 private:
  std::vector<std::size_t> order_;
  std::atomic<std::size_t> position_;
};

// For each task j in start order: how many tasks i < j − global_batch had not started yet.
// "At most 32 ahead" allows none, except tasks that another worker has taken but not yet begun:
// on two workers, at most the other's share of a batch (16), when the operating system
// deschedules it between taking its batch and publishing it in its inbox.
std::size_t most_overtaken(const std::vector<std::size_t>& order) {
  std::vector<bool> started(order.size(), false);
  std::size_t lowest_unstarted = 0;
  std::size_t worst = 0;
  for (std::size_t j : order) {
    started[j] = true;
    while (lowest_unstarted < started.size() && started[lowest_unstarted]) ++lowest_unstarted;
    std::size_t overtaken = 0;
    for (std::size_t i = lowest_unstarted; i + global_batch < j; ++i) overtaken += started[i] ? 0 : 1;
    worst = std::max(worst, overtaken);
  }
  return worst;
}

TEST(StartOrder, OnOneWorkerQueuedTasksFromOneThreadStartInSubmissionOrder) {
  pool p(with_workers(1));
  const std::size_t n = 1000;
  start_log log(n);
  {
    occupied_workers busy(p, 1);  // everything below queues up behind it
    for (std::size_t i = 0; i < n; ++i) p.go([&log, i] { log.started(i); });
  }
  p.stop_and_wait();
  ASSERT_EQ(log.count(), n);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(log.order()[i], i) << "position " << i;
}

TEST(StartOrder, OnOneWorkerTasksSubmittedWhileItRunsStartInSubmissionOrder) {
  pool p(with_workers(1));
  const std::size_t n = stress_count(100000, 10000);
  start_log log(n);
  for (std::size_t i = 0; i < n; ++i) p.go([&log, i] { log.started(i); });
  p.stop_and_wait();
  ASSERT_EQ(log.count(), n);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(log.order()[i], i) << "position " << i;
}

TEST(StartOrder, OnOneWorkerATasksOwnSubmissionsStartInOrderBehindEarlierOnes) {
  pool p(with_workers(1));
  const std::size_t n = 1000;
  start_log log(2 * n);
  {
    occupied_workers busy(p, 1);
    // Submitted from outside first; then a task that submits the second half.
    for (std::size_t i = 0; i + 1 < n; ++i) p.go([&log, i] { log.started(i); });
    p.go([&] {
      log.started(n - 1);
      for (std::size_t i = n; i < 2 * n; ++i) p.go([&log, i] { log.started(i); });
    });
  }
  // Not stop_and_wait() at once: the pool would refuse what the last task submits.
  for (int i = 0; i < 10000 && log.count() < 2 * n; ++i) std::this_thread::sleep_for(1ms);
  p.stop_and_wait();
  ASSERT_EQ(log.count(), 2 * n);
  for (std::size_t i = 0; i < 2 * n; ++i) ASSERT_EQ(log.order()[i], i) << "position " << i;
}

TEST(StartOrder, OnTwoWorkersNoTaskStartsMoreThanOneBatchAheadOfAnEarlierOne) {
  pool p(with_workers(2));
  const std::size_t n = stress_count(200000, 20000);
  start_log log(n);
  for (std::size_t i = 0; i < n; ++i) {
    p.go([&log, i] {
      log.started(i);
      // Uneven task lengths, so that the two workers drift apart.
      if (i % 97 == 0) std::this_thread::sleep_for(50us);
    });
  }
  p.stop_and_wait();
  ASSERT_EQ(log.count(), n);
  EXPECT_LE(most_overtaken(log.order()), global_batch / 2);  // what the other worker may hold
}

TEST(StartOrder, OnTwoWorkersABatchIsNotStrandedBehindItsOwnersLongTask) {
  // One worker takes a batch and then runs a long task; the other must run the rest of that
  // batch before taking newer tasks.
  pool p(with_workers(2));
  const std::size_t n = 4000;
  start_log log(n);
  for (std::size_t i = 0; i < n; ++i) {
    p.go([&log, i] {
      log.started(i);
      if (i == 100) std::this_thread::sleep_for(100ms);
    });
  }
  p.stop_and_wait();
  ASSERT_EQ(log.count(), n);
  EXPECT_LE(most_overtaken(log.order()), global_batch / 2);
}

// pond's group semantics rely on start order: the first failure cancels the tasks after it that
// have not started. With two workers busy on the first two tasks, the third must still be waiting
// when the first fails.
TEST(StartOrder, PondGroupCaseTheFirstFailureCancelsTheThirdTaskOnTwoWorkers) {
  pool p(with_workers(2));
  for (int round = 0; round < 100; ++round) {
    task_group g{p};
    std::atomic<bool> third_ran{false};
    g.go([] {
      std::this_thread::sleep_for(5ms);
      throw std::runtime_error("first fails");
    });
    g.go([] { std::this_thread::sleep_for(30ms); });
    auto third = g.submit([&] { third_ran.store(true); });
    EXPECT_THROW(g.wait(), std::runtime_error);
    EXPECT_FALSE(third_ran.load()) << "round " << round;
    EXPECT_THROW(third.get(), task_cancelled) << "round " << round;
  }
  p.stop_and_wait();
  const pool_metrics m = p.metrics();
  EXPECT_EQ(m.failed, 100U);
  // The third task every round; the second too when the first failed before it started.
  EXPECT_GE(m.cancelled, 100U);
  EXPECT_EQ(m.succeeded + m.cancelled, 200U);
}

// ---------------------------------------------------------------------------------------------
// Starvation: probes submitted from outside every millisecond while both workers are kept busy
// by chains of local work. Every probe must start, and the worst wait must stay within a small
// multiple of the longest local task (the issue that prompted this saw seconds, and growing).

void spin_for(std::chrono::nanoseconds d) {
  const auto until = clock_type::now() + d;
  while (clock_type::now() < until) {
  }
}

// 3–6 ms of local work, varied deterministically per step.
std::chrono::microseconds local_work_length(std::uint64_t step) { return std::chrono::microseconds(3000 + (step * 7919) % 3000); }

struct probe_result {
  std::size_t submitted = 0;
  std::size_t started = 0;
  double worst_wait_ms = 0;
  double longest_local_ms = 0;
};

// Runs two chains of `local` on a 2-worker pool for `duration`, probing every millisecond.
probe_result run_probes(std::chrono::milliseconds duration, const std::function<void(pool&, std::uint64_t)>& local) {
  pool p(with_workers(2));
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> longest_local_ns{0};
  // One chain per worker: each link does its local work, then go()es the next link.
  std::function<void(std::uint64_t)> link = [&](std::uint64_t step) {
    if (stop.load()) return;
    const auto start = clock_type::now();
    local(p, step);
    const std::int64_t took = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - start).count();
    std::int64_t seen = longest_local_ns.load();
    while (took > seen && !longest_local_ns.compare_exchange_weak(seen, took)) {
    }
    p.go([&link, step] { link(step + 2); });
  };
  p.go([&link] { link(0); });
  p.go([&link] { link(1); });

  const std::size_t probes = static_cast<std::size_t>(duration / 1ms);
  std::vector<std::atomic<std::int64_t>> waits(probes);
  for (auto& w : waits) w.store(-1);
  const auto begin = clock_type::now();
  for (std::size_t i = 0; i < probes; ++i) {
    std::this_thread::sleep_until(begin + i * 1ms);
    const auto submitted = clock_type::now();
    p.go([&waits, i, submitted] {
      waits[i].store(std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - submitted).count());
      spin_for(1us);
    });
  }
  // The last probes get as long as the bound below allows any probe; one that has not started
  // by then never counts as started, however the pool ends.
  const auto grace = std::max<std::chrono::nanoseconds>(100ms, 10 * std::chrono::nanoseconds(longest_local_ns.load()));
  const auto give_up = clock_type::now() + grace;
  while (clock_type::now() < give_up && std::any_of(waits.begin(), waits.end(), [](const auto& w) { return w.load() < 0; })) {
    std::this_thread::sleep_for(1ms);
  }
  probe_result r;
  r.submitted = probes;
  for (auto& w : waits) {
    const std::int64_t ns = w.load();
    if (ns >= 0) {
      ++r.started;
      r.worst_wait_ms = std::max(r.worst_wait_ms, static_cast<double>(ns) / 1e6);
    }
  }
  stop.store(true);
  p.stop_and_wait();
  r.longest_local_ms = static_cast<double>(longest_local_ns.load()) / 1e6;
  return r;
}

// Issue 10's workload: 10 s of probes (1 s in sanitizer builds, whose workers run 5-20x slower).
std::chrono::milliseconds probe_duration() {
  return std::chrono::milliseconds(stress_count(10'000, 1000));
}

void expect_no_starvation(const probe_result& r) {
  std::printf("probes started %zu of %zu, worst wait %.1f ms, longest local task %.1f ms\n", r.started, r.submitted,
              r.worst_wait_ms, r.longest_local_ms);
  EXPECT_EQ(r.started, r.submitted);
  // A probe may wait for both workers to finish what they run, and then behind the probes
  // before it: a few local tasks. Ten is generous, and far below what starvation looks like.
  EXPECT_LE(r.worst_wait_ms, 10 * std::max(r.longest_local_ms, 1.0));
}

TEST(Starvation, ProbesStartWhileWorkersChainTasksThatRunParallelFor) {
  expect_no_starvation(run_probes(probe_duration(), [](pool& p, std::uint64_t step) {
    const auto length = local_work_length(step);
    const int items = 3000;
    parallel_for(p, 0, items, [&](int) { spin_for(length / items); });
  }));
}

void tree(pool& p, int depth, std::chrono::nanoseconds leaf) {
  if (depth == 0) {
    spin_for(leaf);
    return;
  }
  parallel_invoke(p, [&] { tree(p, depth - 1, leaf); }, [&] { tree(p, depth - 1, leaf); });
}

TEST(Starvation, ProbesStartWhileWorkersChainForkJoinTrees) {
  expect_no_starvation(run_probes(probe_duration(), [](pool& p, std::uint64_t step) {
    tree(p, 11, local_work_length(step) / 2048);  // 2,048 leaves
  }));
}

TEST(Starvation, ProbesStartWhileWorkersChainNestedGroups) {
  expect_no_starvation(run_probes(probe_duration(), [](pool& p, std::uint64_t step) {
    const auto leaf = local_work_length(step) / 256;
    task_group outer{p};
    for (int i = 0; i < 16; ++i) {
      outer.go([&] {
        task_group inner{p};
        for (int j = 0; j < 16; ++j) inner.go([&] { spin_for(leaf); });
        inner.wait();
      });
    }
    outer.wait();
  }));
}

TEST(Starvation, ProbesStartWhileWorkersChainTasksThatWaitForASubmittedTask) {
  expect_no_starvation(run_probes(probe_duration(), [](pool& p, std::uint64_t step) {
    const auto length = local_work_length(step);
    p.submit([length] { spin_for(length); }).get();  // a helping get()
  }));
}

}  // namespace
}  // namespace tidepool
