// Server-style workloads: tasks submitted from threads outside the pool, as a server's I/O
// threads do. tidepool against oneTBB's task_arena::enqueue, boost::asio::thread_pool + post, and
// a plain mutex + condition_variable pool, in one binary and one run. Pools have 2 workers.
//
//   submit   P producer threads submit N empty fire-and-forget tasks; the clock stops when the
//            last one has run (Mtasks/s). Checks that exactly N tasks ran.
//   latency  one producer submits tasks of 50 µs of work at Poisson-distributed times, at half
//            the workers' capacity (2 workers / 50 µs = 40,000 tasks/s, offered 20,000/s); each
//            task records the time from just before its submission to its start (p50/p99/p99.9).
//            Every scheduler gets the same arrival times.
//   idle     a burst of 200,000 empty tasks, then the CPU time all the pool's threads use while
//            the process sleeps for 2 s (per second of idleness); then one more task must run.
//
// tidepool is also run with its latency histograms off (`tidepool[untimed]`) and timing every
// task (`tidepool[every_task_timed]`) — the default times 1 task in 64 — to show what they cost.
// Built with TIDEPOOL_PERF_QUEUE defined (bench_server_<queue>), the program runs only tidepool,
// with its global queue swapped (lib/global_queue.hpp), as `tidepool[<queue>]`.
//
//   perf/bench_server [--quick] [google-benchmark flags]
//   --quick: 500,000 tasks and 2 workers only for submit, 10,000 latency samples, 1 s idle.

#include <benchmark/benchmark.h>
#include <sys/prctl.h>  // for prctl, PR_SET_TIMERSLACK

#include <algorithm>  // for std::sort
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cmath>      // for std::ceil
#include <cstdint>    // for std::uint64_t, std::int64_t
#include <cstring>    // for std::strcmp
#include <ctime>      // for clock_gettime
#include <random>     // for std::mt19937_64, std::exponential_distribution
#include <string>     // for std::string
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "bench_main.hpp"
#include "completion_counter.hpp"
#include "pool_adapters.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

bool g_quick = false;
std::size_t g_tasks = 2'000'000;
tidepool::perf::completion_counter g_done;

// ---- submit -------------------------------------------------------------------------------------

template <class Pool>
void BM_ExternalSubmission(benchmark::State& state) {
  const auto workers = static_cast<std::size_t>(state.range(0));
  const auto producers = static_cast<std::size_t>(state.range(1));
  double total_seconds = 0;
  for (auto _ : state) {
    g_done.reset();
    Pool pool(workers);
    std::atomic<std::size_t> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        const std::size_t share = g_tasks / producers + (p < g_tasks % producers ? 1 : 0);
        for (std::size_t i = 0; i < share; ++i) pool.post([] { g_done.count_one(); });
      });
    }
    while (ready.load() < producers) {
    }
    const auto start = clock_type::now();
    go.store(true, std::memory_order_release);
    for (auto& t : threads) t.join();
    g_done.wait_for(g_tasks);
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    state.SetIterationTime(seconds);
    total_seconds += seconds;
    if (g_done.total() != g_tasks) {
      state.SkipWithError("wrong answer: a task ran more than once");
      return;
    }
  }
  state.counters["Mtasks/s"] = static_cast<double>(g_tasks) * static_cast<double>(state.iterations()) / total_seconds / 1e6;
  state.SetLabel("submit/" + std::to_string(workers) + "W" + std::to_string(producers) + "P");
}

// ---- latency ------------------------------------------------------------------------------------

constexpr std::size_t latency_workers = 2;
constexpr auto task_work = 50us;
constexpr double offered_load = 0.5;

std::size_t latency_samples() { return g_quick ? 10'000 : 100'000; }

// The same arrival times for every scheduler: offsets from the start, exponential gaps.
const std::vector<clock_type::duration>& arrivals() {
  static const std::vector<clock_type::duration> offsets = [] {
    const double mean_gap_ns =
        std::chrono::duration<double, std::nano>(task_work).count() / (latency_workers * offered_load);
    std::mt19937_64 rng(20261127);
    std::exponential_distribution<double> gap(1.0 / mean_gap_ns);
    std::vector<clock_type::duration> v(latency_samples());
    double at = 0;
    for (auto& offset : v) {
      at += gap(rng);
      offset = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double, std::nano>(at));
    }
    return v;
  }();
  return offsets;
}

double percentile_us(std::vector<std::uint64_t> ns, double q) {
  std::sort(ns.begin(), ns.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(ns.size())));
  return static_cast<double>(ns[std::max<std::size_t>(rank, 1) - 1]) / 1e3;
}

template <class Pool>
void BM_Latency(benchmark::State& state) {
  // Sleep until each arrival with the kernel's tightest timer slack, so the producer wakes on
  // time without spinning on a core the workers need.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const auto& offsets = arrivals();
  const std::size_t n = offsets.size();
  std::vector<std::uint64_t> wait_ns(n, UINT64_MAX);
  for (auto _ : state) {
    g_done.reset();
    std::fill(wait_ns.begin(), wait_ns.end(), UINT64_MAX);
    Pool pool(latency_workers);
    const auto start = clock_type::now() + 1ms;
    for (std::size_t i = 0; i < n; ++i) {
      std::this_thread::sleep_until(start + offsets[i]);
      const auto submitted = clock_type::now();
      pool.post([&wait_ns, i, submitted] {
        const auto started = clock_type::now();
        wait_ns[i] = static_cast<std::uint64_t>(std::chrono::nanoseconds(started - submitted).count());
        while (clock_type::now() - started < task_work) {
        }
        g_done.count_one();
      });
    }
    g_done.wait_for(n);
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    if (g_done.total() != n || std::find(wait_ns.begin(), wait_ns.end(), UINT64_MAX) != wait_ns.end()) {
      state.SkipWithError("wrong answer: a task did not run exactly once");
      return;
    }
  }
  state.counters["p50_us"] = percentile_us(wait_ns, 0.50);
  state.counters["p99_us"] = percentile_us(wait_ns, 0.99);
  state.counters["p999_us"] = percentile_us(wait_ns, 0.999);
  state.counters["max_us"] = percentile_us(wait_ns, 1.0);
  state.SetLabel("latency/2W50%");
}

// ---- idle ---------------------------------------------------------------------------------------

std::uint64_t cpu_ns(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000 + static_cast<std::uint64_t>(t.tv_nsec);
}

// CPU time of every thread of the process except the calling one. The runner gives this
// benchmark a process of its own, so those threads are the pool's. Signed: the two clocks are
// read one after the other, so for an idle pool the difference of two readings can dip below 0.
std::int64_t other_threads_cpu_ns() {
  const std::uint64_t own = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
  return static_cast<std::int64_t>(cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - own);
}

template <class Pool>
void BM_Idle(benchmark::State& state) {
  constexpr std::size_t burst = 200'000;
  const auto idle_for = g_quick ? 1s : 2s;
  double cpu_us_per_s = 0;
  for (auto _ : state) {
    g_done.reset();
    Pool pool(2);
    for (std::size_t i = 0; i < burst; ++i) pool.post([] { g_done.count_one(); });
    g_done.wait_for(burst);
    const std::int64_t before = other_threads_cpu_ns();
    std::this_thread::sleep_for(idle_for);
    const std::int64_t used = std::max<std::int64_t>(other_threads_cpu_ns() - before, 0);
    cpu_us_per_s = static_cast<double>(used) / 1e3 / std::chrono::duration<double>(idle_for).count();
    state.SetIterationTime(std::chrono::duration<double>(idle_for).count());
    pool.post([] { g_done.count_one(); });  // asleep, not dead: one more task must run
    g_done.wait_for(burst + 1);
    if (g_done.total() != burst + 1) {
      state.SkipWithError("wrong answer: a task did not run exactly once");
      return;
    }
  }
  state.counters["cpu_us_per_s"] = cpu_us_per_s;
  state.SetLabel("idle/2W");
}

// ---- registration -------------------------------------------------------------------------------

template <class Pool>
void register_scheduler(const std::string& name, bool with_latency_and_idle = true) {
  auto* submit = benchmark::RegisterBenchmark(("submit/" + name).c_str(), BM_ExternalSubmission<Pool>);
  submit->ArgNames({"W", "P"});
  for (int w : g_quick ? std::vector<int>{2} : std::vector<int>{1, 2}) {
    for (int p : {1, 2}) submit->Args({w, p});
  }
  submit->UseManualTime()->Unit(benchmark::kMillisecond)->DisplayAggregatesOnly(true);
  if (!with_latency_and_idle) return;
  benchmark::RegisterBenchmark(("latency/" + name).c_str(), BM_Latency<Pool>)
      ->Iterations(1)
      ->Repetitions(3)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->DisplayAggregatesOnly(true);
  benchmark::RegisterBenchmark(("idle/" + name).c_str(), BM_Idle<Pool>)
      ->Iterations(1)
      ->Repetitions(g_quick ? 1 : 3)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->DisplayAggregatesOnly(true);
}

void register_all() {
  using namespace tidepool::perf;
#ifdef TIDEPOOL_PERF_QUEUE
  register_scheduler<tidepool_pool>("tidepool[" TIDEPOOL_PERF_QUEUE "]");
#else
  register_scheduler<tidepool_pool>("tidepool");
  register_scheduler<tidepool_pool_sampling<0>>("tidepool[untimed]", false);
  register_scheduler<tidepool_pool_sampling<1>>("tidepool[every_task_timed]", false);
  register_scheduler<tbb_arena_pool>("tbb_enqueue");
  register_scheduler<asio_pool>("asio_pool");
  register_scheduler<mutex_pool>("mutex_pool");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) g_quick |= std::strcmp(argv[i], "--quick") == 0;
  register_all();
  tidepool::perf::summary_reporter reporter("Mtasks/s", "million tasks per second (submit only)");
  return tidepool::perf::benchmark_main(
      argc, argv, {"--tasks=", &g_tasks, 500'000, "%zu empty tasks per submit run, submitted from outside the pool"},
      reporter);
}
