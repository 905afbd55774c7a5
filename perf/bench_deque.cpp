// The Chase–Lev deque on its own: what the owner's fast path costs, what a thief gets, and what
// keeping owner and thieves on separate cache lines is worth (Separation = 64 against 8, i.e.
// top and bottom packed into one line).
//
//   perf/bench_deque [google-benchmark flags]

#include <benchmark/benchmark.h>

#include <atomic>   // for std::atomic
#include <cstdint>  // for std::uint64_t
#include <thread>   // for std::thread
#include <vector>   // for std::vector

#include "tidepool/detail/chase_lev_deque.hpp"

namespace {

using tidepool::detail::chase_lev_deque;
using tidepool::detail::steal_status;

int g_item = 0;

// The owner's push + pop pair with nobody stealing: the cost every spawned task pays twice.
template <std::size_t Separation>
void BM_OwnerPushPop(benchmark::State& state) {
  chase_lev_deque<int, Separation> deque(256);
  for (auto _ : state) {
    benchmark::DoNotOptimize(deque.push(&g_item));
    benchmark::DoNotOptimize(deque.pop());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OwnerPushPop<64>)->Name("deque/owner_push_pop/separated");
BENCHMARK(BM_OwnerPushPop<8>)->Name("deque/owner_push_pop/packed");

// The owner keeps pushing (and popping half of what it pushed, as a worker that spawns and runs
// its own tasks does) while one thief steals. Reports what the thief got and what the owner did.
template <std::size_t Separation>
void BM_OwnerWithOneThief(benchmark::State& state) {
  const auto capacity = static_cast<std::size_t>(state.range(0));
  chase_lev_deque<int, Separation> deque(capacity);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> stolen{0};
  std::thread thief([&] {
    std::uint64_t mine = 0;
    while (!stop.load(std::memory_order_relaxed)) mine += deque.steal().status == steal_status::success;
    stolen.store(mine);
  });
  std::uint64_t owner_ops = 0;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      if (deque.push(&g_item)) ++owner_ops;
      if ((i & 1) != 0 && deque.pop() != nullptr) ++owner_ops;
    }
  }
  stop.store(true);
  thief.join();
  while (deque.pop() != nullptr) {
  }
  state.counters["owner_ops/s"] = benchmark::Counter(static_cast<double>(owner_ops), benchmark::Counter::kIsRate);
  state.counters["steals/s"] = benchmark::Counter(static_cast<double>(stolen.load()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_OwnerWithOneThief<64>)->Name("deque/owner_with_thief/separated")->Arg(256)->Arg(1024)->UseRealTime();
BENCHMARK(BM_OwnerWithOneThief<8>)->Name("deque/owner_with_thief/packed")->Arg(256)->Arg(1024)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
