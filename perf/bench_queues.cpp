// MPMC queue throughput: tidepool's global queue against moodycamel::ConcurrentQueue,
// boost::lockfree::queue and a mutex-protected std::deque, in one binary and one run.
//
// Each measurement moves `--items` pointers (default 10,000,000) from P producer threads to C
// consumer threads and times it from the moment all threads are released until the last item is
// consumed. Every run verifies that the sum of what was consumed equals the sum of what was
// produced; a wrong sum fails the run.
//
//   perf/bench_queues [--quick] [--items=N] [google-benchmark flags, e.g. --benchmark_out=x.json]
//
// --quick moves 1,000,000 items with 3 repetitions (a demo that finishes in seconds); the default
// is 10,000,000 items with 5 repetitions. A table of medians and ratios is printed at the end.

#include <benchmark/benchmark.h>

#include <atomic>    // for std::atomic
#include <chrono>    // for std::chrono::steady_clock
#include <cstdint>   // for std::uintptr_t
#include <string>    // for std::string
#include <thread>    // for std::thread
#include <vector>    // for std::vector

#include "queue_adapters.hpp"
#include "bench_main.hpp"

namespace {

std::size_t g_items = 10'000'000;

struct transfer_result {
  double seconds;
  bool verified;
};

template <class Queue>
transfer_result transfer(int producers, int consumers, std::size_t items) {
  Queue queue;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<std::size_t> consumed{0};
  std::atomic<std::uint64_t> consumed_sum{0};

  auto wait_for_go = [&] {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) {
    }
  };

  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      wait_for_go();
      // Producer p sends values p+1, p+1+P, p+1+2P, ...: together exactly 1..items.
      for (std::size_t v = static_cast<std::size_t>(p) + 1; v <= items; v += static_cast<std::size_t>(producers)) {
        queue.push(reinterpret_cast<void*>(static_cast<std::uintptr_t>(v)));
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      wait_for_go();
      // Count locally and publish in batches: a shared counter bumped per item would measure the
      // counter, not the queue.
      std::size_t batch = 0;
      std::uint64_t sum = 0;
      for (;;) {
        void* p = nullptr;
        if (queue.try_pop(p)) {
          sum += reinterpret_cast<std::uintptr_t>(p);
          if (++batch < 256) continue;
        }
        if (batch > 0) {
          consumed.fetch_add(batch, std::memory_order_relaxed);
          batch = 0;
        }
        if (consumed.load(std::memory_order_relaxed) >= items) break;
      }
      consumed_sum.fetch_add(sum);
    });
  }
  while (ready.load() < producers + consumers) {
  }
  const auto start = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  const auto stop = std::chrono::steady_clock::now();
  const std::uint64_t expected = static_cast<std::uint64_t>(items) * (items + 1) / 2;
  return {std::chrono::duration<double>(stop - start).count(), consumed_sum.load() == expected};
}

template <class Queue>
void BM_Queue(benchmark::State& state) {
  const auto producers = static_cast<int>(state.range(0));
  const auto consumers = static_cast<int>(state.range(1));
  double total_seconds = 0;
  for (auto _ : state) {
    const transfer_result r = transfer<Queue>(producers, consumers, g_items);
    if (!r.verified) {
      state.SkipWithError("consumed values do not sum to what was produced");
      return;
    }
    state.SetIterationTime(r.seconds);
    total_seconds += r.seconds;
  }
  state.counters["Mitems/s"] =
      static_cast<double>(g_items) * static_cast<double>(state.iterations()) / total_seconds / 1e6;
  state.SetLabel(std::to_string(producers) + "P" + std::to_string(consumers) + "C");
}

void configurations(benchmark::internal::Benchmark* b) {
  b->ArgNames({"P", "C"});
  for (auto [p, c] : {std::pair{1, 1}, {1, 2}, {2, 1}, {2, 2}}) b->Args({p, c});
  b->UseManualTime()->Unit(benchmark::kMillisecond)->ReportAggregatesOnly(true);
}

using tidepool::perf::boost_lockfree_queue;
using tidepool::perf::moodycamel_queue;
using tidepool::perf::mutex_deque_queue;
using tidepool::perf::tidepool_queue;

BENCHMARK(BM_Queue<tidepool_queue>)->Apply(configurations)->Name("queue/tidepool");
BENCHMARK(BM_Queue<moodycamel_queue>)->Apply(configurations)->Name("queue/moodycamel");
BENCHMARK(BM_Queue<boost_lockfree_queue>)->Apply(configurations)->Name("queue/boost_lockfree");
BENCHMARK(BM_Queue<mutex_deque_queue>)->Apply(configurations)->Name("queue/mutex_deque");

}  // namespace

int main(int argc, char** argv) {
  tidepool::perf::summary_reporter reporter("Mitems/s", "million items per second");
  return tidepool::perf::benchmark_main(argc, argv, {"--items=", &g_items, 1'000'000, "moving %zu items per run"}, reporter);
}
