// Worker placement and life-cycle options: pool_options::cpus pins workers (and refuses a CPU
// the process cannot use), on_worker_start / on_worker_stop run on the worker's own thread
// around every task it runs, for workers that resize() adds or retires too, and a hook that
// throws costs no worker; this_worker_index() names the worker.

#include <gtest/gtest.h>
#include <pthread.h>  // for pthread_getaffinity_np
#include <sched.h>    // for sched_getaffinity, sched_getcpu, cpu_set_t, CPU_*

#include <algorithm>  // for std::sort, std::find
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono::seconds, std::chrono::milliseconds
#include <cstddef>    // for std::size_t
#include <mutex>      // for std::mutex, std::lock_guard
#include <optional>   // for std::optional
#include <stdexcept>  // for std::invalid_argument, std::runtime_error
#include <string>     // for std::string
#include <thread>     // for std::this_thread
#include <utility>    // for std::move
#include <vector>     // for std::vector

#include "pool_options_for_tests.hpp"
#include "tidepool/fork_join.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/task.hpp"
#include "tidepool/this_worker.hpp"

namespace {

using tidepool::pool;
using tidepool::testing::with_workers;

// What the hooks saw, per thread: the worker index each start and stop hook was given, and how
// many tasks had run on that thread when its stop hook ran.
struct hook_log {
  std::mutex mutex;
  std::vector<std::size_t> started;
  std::vector<std::size_t> stopped;
  long tasks_seen_by_stop_hooks = 0;
  std::atomic<int> tasks_before_start{0};
};

thread_local bool start_hook_ran_here = false;
thread_local long tasks_run_here = 0;

tidepool::pool_options logging_hooks(hook_log& log, std::size_t workers) {
  tidepool::pool_options o = with_workers(workers);
  o.on_worker_start = [&log](std::size_t worker) {
    EXPECT_EQ(tidepool::this_worker_index(), worker) << "start hook on the worker's own thread";
    start_hook_ran_here = true;
    tasks_run_here = 0;
    const std::lock_guard lock(log.mutex);
    log.started.push_back(worker);
  };
  o.on_worker_stop = [&log](std::size_t worker) {
    EXPECT_TRUE(start_hook_ran_here) << "stop hook on the thread the start hook ran on";
    start_hook_ran_here = false;
    const std::lock_guard lock(log.mutex);
    log.stopped.push_back(worker);
    log.tasks_seen_by_stop_hooks += tasks_run_here;
  };
  return o;
}

// A task that checks that its thread's start hook ran, and counts itself on the thread.
auto counted_task(hook_log& log) {
  return [&log] {
    if (!start_hook_ran_here) log.tasks_before_start.fetch_add(1);
    ++tasks_run_here;
  };
}

std::vector<std::size_t> sorted(std::vector<std::size_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(WorkerHooks, StartRunsBeforeEveryTaskAndStopAfterTheLastOnTheSameThread) {
  hook_log log;
  const long tasks = 2000;
  {
    pool p(logging_hooks(log, 3));
    std::vector<tidepool::task<void>> handles;
    for (long i = 0; i < tasks; ++i) handles.push_back(p.submit(counted_task(log)));
    for (auto& h : handles) h.get();
  }
  EXPECT_EQ(log.tasks_before_start.load(), 0);
  EXPECT_EQ(sorted(log.started), (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_EQ(sorted(log.stopped), (std::vector<std::size_t>{0, 1, 2})) << "every stop hook has run when ~pool returns";
  EXPECT_EQ(log.tasks_seen_by_stop_hooks, tasks) << "a task ran on a worker after its stop hook";
}

TEST(WorkerHooks, WorkersThatResizeAddsOrRetiresRunTheirHooks) {
  hook_log log;
  {
    pool p(logging_hooks(log, 1));
    p.resize(3);
    // Tasks that keep all three busy at once, so each new worker has surely started.
    std::atomic<int> arrived{0};
    std::vector<tidepool::task<void>> handles;
    for (int i = 0; i < 3; ++i) {
      handles.push_back(p.submit([&] {
        arrived.fetch_add(1);
        while (arrived.load() < 3) std::this_thread::yield();
      }));
    }
    for (auto& h : handles) h.get();
    {
      const std::lock_guard lock(log.mutex);
      EXPECT_EQ(sorted(log.started), (std::vector<std::size_t>{0, 1, 2}));
    }
    p.resize(1);
    // Retired workers leave the next time they look for work: soon, but not synchronously.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (;;) {
      {
        const std::lock_guard lock(log.mutex);
        if (log.stopped.size() == 2 || std::chrono::steady_clock::now() > deadline) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    {
      const std::lock_guard lock(log.mutex);
      EXPECT_EQ(sorted(log.stopped), (std::vector<std::size_t>{1, 2}));
    }
    p.resize(2);  // restarts worker 1: its start hook runs again
    p.submit(counted_task(log)).get();
  }
  EXPECT_EQ(log.tasks_before_start.load(), 0);
  EXPECT_EQ(sorted(log.started), (std::vector<std::size_t>{0, 1, 1, 2}));
  EXPECT_EQ(sorted(log.stopped), (std::vector<std::size_t>{0, 1, 1, 2}));
}

TEST(WorkerHooks, AThrowingHookGoesToTheUnhandledHandlerAndCostsNoWorker) {
  std::atomic<int> reported{0};
  std::atomic<int> stops{0};
  {
    tidepool::pool_options o = with_workers(2);
    o.on_worker_start = [](std::size_t) { throw std::runtime_error("start"); };
    o.on_worker_stop = [&](std::size_t) {
      stops.fetch_add(1);
      throw std::runtime_error("stop");
    };
    o.on_unhandled_exception = [&](std::exception_ptr e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::runtime_error&) {
        reported.fetch_add(1);
      }
    };
    pool p(std::move(o));
    // Both workers still serve: two tasks that wait for each other finish only if both run.
    std::atomic<int> arrived{0};
    auto meet = [&] {
      arrived.fetch_add(1);
      while (arrived.load() < 2) std::this_thread::yield();
    };
    auto a = p.submit(meet);
    auto b = p.submit(meet);
    a.get();
    b.get();
  }
  EXPECT_EQ(stops.load(), 2) << "a failed start hook does not skip the stop hook";
  EXPECT_EQ(reported.load(), 4) << "two start and two stop hooks threw";
}

TEST(ThisWorkerIndex, IsEmptyOutsideAndTheWorkersIndexInsideATask) {
  EXPECT_FALSE(tidepool::this_worker_index().has_value());
  pool p(with_workers(2));
  EXPECT_FALSE(tidepool::this_worker_index().has_value()) << "a pool's owner thread is no worker";
  std::atomic<bool> outside_range{false};
  tidepool::parallel_for(p, 0, 10000, [&](int) {
    const std::optional<std::size_t> index = tidepool::this_worker_index();
    if (!index || *index >= 2) outside_range.store(true);
  });
  EXPECT_FALSE(outside_range.load());
}

std::vector<int> usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

TEST(Pinning, EachWorkerRunsOnlyOnTheCpuItWasGiven) {
  const std::vector<int> cpus = usable_cpus();
  ASSERT_FALSE(cpus.empty());
  const int chosen = cpus.back();
  tidepool::pool_options o = with_workers(2);
  o.cpus = {chosen};  // both workers: cpus[i % 1]
  pool p(std::move(o));
  std::mutex mutex;
  std::vector<std::vector<int>> masks;
  std::atomic<int> arrived{0};
  auto record = [&] {
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof set, &set), 0);
    std::vector<int> mine;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) mine.push_back(c);
    }
    {
      const std::lock_guard lock(mutex);
      masks.push_back(mine);
    }
    arrived.fetch_add(1);
    while (arrived.load() < 2) std::this_thread::yield();  // so that both workers take one
  };
  auto a = p.submit(record);
  auto b = p.submit(record);
  a.get();
  b.get();
  ASSERT_EQ(masks.size(), 2U);
  for (const auto& mask : masks) EXPECT_EQ(mask, std::vector<int>{chosen});
}

TEST(Pinning, ACpuTheProcessCannotUseIsRefusedAtConstruction) {
  const std::vector<int> cpus = usable_cpus();
  std::vector<int> refused{-1, CPU_SETSIZE, CPU_SETSIZE + 7};
  for (int c = 0; c < CPU_SETSIZE && refused.size() < 4; ++c) {
    if (std::find(cpus.begin(), cpus.end(), c) == cpus.end()) refused.push_back(c);  // exists, not ours
  }
  for (const int cpu : refused) {
    tidepool::pool_options o = with_workers(2);
    o.cpus = {cpus.front(), cpu};
    try {
      pool p(std::move(o));
      ADD_FAILURE() << "CPU " << cpu << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("CPU " + std::to_string(cpu) + " "), std::string::npos) << e.what();
    }
  }
}

}  // namespace
