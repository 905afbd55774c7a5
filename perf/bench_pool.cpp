// External submission throughput: P producer threads (outside the pool) submit N empty
// fire-and-forget tasks to a pool of W workers; the clock stops when the last task has run.
// tidepool against oneTBB's task_arena::enqueue, boost::asio::thread_pool + post, and a plain
// mutex + condition_variable pool, in one binary and one run. Every run checks that exactly N
// tasks ran.
//
//   perf/bench_pool [--quick] [--tasks=N] [google-benchmark flags]
//
// Default: N = 2,000,000 tasks, 5 repetitions; --quick: N = 200,000, 3 repetitions. Pool
// construction and destruction are outside the timed region.

#include <benchmark/benchmark.h>

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono::steady_clock
#include <string>   // for std::string, std::stoull
#include <thread>   // for std::thread
#include <vector>   // for std::vector

#include "completion_counter.hpp"
#include "pool_adapters.hpp"
#include "bench_main.hpp"

namespace {

std::size_t g_tasks = 2'000'000;
tidepool::perf::completion_counter g_done;

template <class Pool>
void BM_ExternalSubmission(benchmark::State& state) {
  const auto workers = static_cast<std::size_t>(state.range(0));
  const auto producers = static_cast<std::size_t>(state.range(1));
  double total_seconds = 0;
  for (auto _ : state) {
    state.PauseTiming();
    g_done.reset();
    {
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
      const auto start = std::chrono::steady_clock::now();
      go.store(true, std::memory_order_release);
      for (auto& t : threads) t.join();
      g_done.wait_for(g_tasks);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      state.SetIterationTime(seconds);
      total_seconds += seconds;
      if (g_done.total() != g_tasks) {
        state.SkipWithError("a task ran more than once");
        return;
      }
    }
    state.ResumeTiming();
  }
  state.counters["Mtasks/s"] = static_cast<double>(g_tasks) * static_cast<double>(state.iterations()) / total_seconds / 1e6;
  state.SetLabel(std::to_string(workers) + "W" + std::to_string(producers) + "P");
}

void configurations(benchmark::internal::Benchmark* b) {
  b->ArgNames({"W", "P"});
  for (int w : {1, 2}) {
    for (int p : {1, 2}) b->Args({w, p});
  }
  b->UseManualTime()->Unit(benchmark::kMillisecond)->ReportAggregatesOnly(true);
}

using tidepool::perf::asio_pool;
using tidepool::perf::mutex_pool;
using tidepool::perf::tbb_arena_pool;
using tidepool::perf::tidepool_pool;

BENCHMARK(BM_ExternalSubmission<tidepool_pool>)->Apply(configurations)->Name("submit/tidepool");
BENCHMARK(BM_ExternalSubmission<tbb_arena_pool>)->Apply(configurations)->Name("submit/tbb_enqueue");
BENCHMARK(BM_ExternalSubmission<asio_pool>)->Apply(configurations)->Name("submit/asio_pool");
BENCHMARK(BM_ExternalSubmission<mutex_pool>)->Apply(configurations)->Name("submit/mutex_pool");

}  // namespace

int main(int argc, char** argv) {
  tidepool::perf::summary_reporter reporter("Mtasks/s", "million tasks per second");
  return tidepool::perf::benchmark_main(argc, argv, {"--tasks=", &g_tasks, 200'000, "%zu empty tasks per run, submitted from outside the pool"}, reporter);
}
