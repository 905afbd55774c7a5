// Fork-join: tidepool (parallel_invoke / parallel_reduce / parallel_for, task_group, and
// coroutines: co_task with when_all, the `tidepool_coro` rows) against oneTBB (tbb::task_group,
// tbb::parallel_invoke, tbb::parallel_for) and the serial code, in one
// binary and one run, with 1 and 2 threads.
//
//   fib(30)      naive recursion, one child spawned per call, the other called: 2,692,537 calls
//   skynet(6)    10-ary tree, leaves return their ordinal: 1,111,111 tasks, sum 499,999,500,000
//   nqueens(12)  each safe square of the next row is a child task: 856,189 boards, 14,200 solutions
//   uts          Unbalanced Tree Search, tree T1 (geometric, fixed shape: -t 1 -a 3 -d 10 -b 4
//                -r 19), each child a task: 4,130,071 nodes, 3,305,118 leaves, depth 10
//   matmul(512)  C += A·B, C split into 4 quadrants computed in parallel, each doing its 2
//                half-products in turn, down to 32×32 blocks; the elements are small integers
//                (held in doubles), so the product is exact and is compared element by element
//   for(1e8)     10^8 trivial iterations (a byte store each); the task_group versions halve the
//                range down to as many pieces as tidepool's parallel_for makes when nobody steals
//
// `tidepool_coro_serial` (1 thread only): the same coroutines with each child awaited in turn,
// no when_all, nothing forked: what a coroutine frame per node costs before any scheduling, the
// floor under `tidepool_coro`.
//
// Every run checks its answer, outside the timed region; a wrong one fails the benchmark.
// boost::asio::thread_pool and the mutex + condvar pool are listed for the recursive workloads
// but cannot run them (see unsupported_reason).
//
//   perf/bench_forkjoin [--quick] [--threads=N] [google-benchmark flags]
//
// Threads: 1, 2, 4, ... and N (default 2). --quick: N threads only, 3 repetitions of at least
// 50 ms each. The sizes do not change with --quick: the answers are the published ones.

#include <benchmark/benchmark.h>
#include <oneapi/tbb/global_control.h>   // for tbb::global_control
#include <oneapi/tbb/parallel_for.h>     // for tbb::parallel_for
#include <oneapi/tbb/parallel_invoke.h>  // for tbb::parallel_invoke
#include <oneapi/tbb/task_arena.h>       // for tbb::task_arena
#include <oneapi/tbb/task_group.h>       // for tbb::task_group

#include <algorithm>         // for std::fill
#include <array>             // for std::array
#include <chrono>            // for std::chrono::steady_clock
#include <concepts>          // for std::integral
#include <cstddef>           // for std::size_t
#include <cstdint>           // for std::int64_t, std::uint32_t
#include <cstdio>            // for std::fprintf, std::snprintf
#include <functional>        // for std::plus
#include <initializer_list>  // for the list of workloads in register_benchmarks
#include <string>            // for std::string, std::to_string
#include <tuple>             // for std::apply
#include <utility>           // for std::forward, std::index_sequence
#include <vector>            // for std::vector

#include "bench_main.hpp"
#include "tidepool/coro.hpp"
#include "tidepool/tidepool.hpp"
#include "uts.hpp"

namespace {

std::size_t g_max_threads = 2;

constexpr int fib_n = 30;
constexpr long fib_answer = 832'040;
constexpr std::int64_t skynet_size = 1'000'000;  // 10^6 leaves: depth 6
constexpr std::int64_t skynet_answer = 499'999'500'000;
constexpr int queens_n = 12;
constexpr std::int64_t queens_answer = 14'200;
constexpr std::size_t matmul_n = 512;
constexpr std::size_t matmul_leaf = 32;
constexpr std::size_t for_n = 100'000'000;

// ---- how each scheduler runs sibling functions and waits for them -----------------------------
// matmul and the task_group versions of `for` are written once, against these.

struct serial_fork {
  template <class... F>
  void operator()(F&&... f) const {
    (f(), ...);
  }
};

struct tidepool_invoke_fork {
  tidepool::pool& pool;
  template <class... F>
  void operator()(F&&... f) const {
    tidepool::parallel_invoke(pool, f...);
  }
};

// The first function runs on the calling thread, as a task_group user would write it.
struct tidepool_group_fork {
  tidepool::pool& pool;
  template <class First, class... Rest>
  void operator()(First&& first, Rest&&... rest) const {
    tidepool::task_group g(pool);
    (g.go(rest), ...);
    first();
    g.wait();
  }
};

struct tbb_group_fork {
  template <class First, class... Rest>
  void operator()(First&& first, Rest&&... rest) const {
    tbb::task_group g;
    (g.run(rest), ...);
    first();
    g.wait();
  }
};

// ---- fib --------------------------------------------------------------------------------------

long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

long fib_tidepool(tidepool::pool& p, int n) {
  if (n < 2) return n;
  long a = 0;
  long b = 0;
  tidepool::parallel_invoke(p, [&] { a = fib_tidepool(p, n - 1); }, [&] { b = fib_tidepool(p, n - 2); });
  return a + b;
}

long fib_tidepool_group(tidepool::pool& p, int n) {
  if (n < 2) return n;
  long a = 0;
  tidepool::task_group g(p);
  g.go([&] { a = fib_tidepool_group(p, n - 1); });
  const long b = fib_tidepool_group(p, n - 2);
  g.wait();
  return a + b;
}

long fib_tbb_group(int n) {
  if (n < 2) return n;
  long a = 0;
  tbb::task_group g;
  g.run([&] { a = fib_tbb_group(n - 1); });
  const long b = fib_tbb_group(n - 2);
  g.wait();
  return a + b;
}

long fib_tbb_invoke(int n) {
  if (n < 2) return n;
  long a = 0;
  long b = 0;
  tbb::parallel_invoke([&] { a = fib_tbb_invoke(n - 1); }, [&] { b = fib_tbb_invoke(n - 2); });
  return a + b;
}

// The coroutine version: both halves are co_tasks, when_all may run them in parallel.
tidepool::co_task<long> fib_coro(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await tidepool::when_all(fib_coro(n - 1), fib_coro(n - 2));
  co_return a + b;
}

tidepool::co_task<long> fib_coro_serial(int n) {
  if (n < 2) co_return n;
  const long a = co_await fib_coro_serial(n - 1);
  co_return a + co_await fib_coro_serial(n - 2);
}

// The children [first, last) of a coroutine fork-join (at least two), split in halves as
// parallel_reduce with grain 1 splits its range: co_await gives the sums of the two halves. A
// half of one child is that child's own co_task, with no coroutine around it.
template <class Result, class Child>
tidepool::co_task<Result> sum_coro(int first, int last, const Child& child);

template <class Result, class Child>
auto sum_halves(int first, int last, const Child& child) {
  auto half = [&child](int from, int to) { return to - from == 1 ? child(from) : sum_coro<Result>(from, to, child); };
  const int middle = first + (last - first) / 2;
  return tidepool::when_all(half(first, middle), half(middle, last));
}

template <class Result, class Child>
tidepool::co_task<Result> sum_coro(int first, int last, const Child& child) {
  auto [low, high] = co_await sum_halves<Result>(first, last, child);
  co_return low + high;
}

// ---- skynet -----------------------------------------------------------------------------------

std::int64_t skynet_serial(std::int64_t num, std::int64_t size) {
  if (size == 1) return num;
  std::int64_t sum = 0;
  for (std::int64_t i = 0; i < 10; ++i) sum += skynet_serial(num + i * (size / 10), size / 10);
  return sum;
}

std::int64_t skynet_tidepool(tidepool::pool& p, std::int64_t num, std::int64_t size) {
  if (size == 1) return num;
  return tidepool::parallel_reduce(
      p, std::int64_t{0}, std::int64_t{10}, std::int64_t{0},
      [&](std::int64_t i) { return skynet_tidepool(p, num + i * (size / 10), size / 10); }, std::plus<>(), 1);
}

std::int64_t skynet_tidepool_group(tidepool::pool& p, std::int64_t num, std::int64_t size) {
  if (size == 1) return num;
  std::int64_t parts[10] = {};
  tidepool::task_group g(p);
  for (std::int64_t i = 1; i < 10; ++i) {
    g.go([&, i] { parts[i] = skynet_tidepool_group(p, num + i * (size / 10), size / 10); });
  }
  parts[0] = skynet_tidepool_group(p, num, size / 10);
  g.wait();
  std::int64_t sum = 0;
  for (std::int64_t v : parts) sum += v;
  return sum;
}

std::int64_t skynet_tbb_group(std::int64_t num, std::int64_t size) {
  if (size == 1) return num;
  std::int64_t parts[10] = {};
  tbb::task_group g;
  for (std::int64_t i = 1; i < 10; ++i) g.run([&, i] { parts[i] = skynet_tbb_group(num + i * (size / 10), size / 10); });
  parts[0] = skynet_tbb_group(num, size / 10);
  g.wait();
  std::int64_t sum = 0;
  for (std::int64_t v : parts) sum += v;
  return sum;
}

// The coroutine version: the ten children of a node in one when_all.
tidepool::co_task<std::int64_t> skynet_coro(std::int64_t num, std::int64_t size) {
  if (size == 1) co_return num;
  const std::int64_t step = size / 10;
  auto parts = co_await [&]<std::size_t... I>(std::index_sequence<I...>) {
    return tidepool::when_all(skynet_coro(num + static_cast<std::int64_t>(I) * step, step)...);
  }(std::make_index_sequence<10>{});
  co_return std::apply([](auto... p) { return (p + ...); }, parts);
}

tidepool::co_task<std::int64_t> skynet_coro_serial(std::int64_t num, std::int64_t size) {
  if (size == 1) co_return num;
  std::int64_t sum = 0;
  for (std::int64_t i = 0; i < 10; ++i) sum += co_await skynet_coro_serial(num + i * (size / 10), size / 10);
  co_return sum;
}

// ---- nqueens ----------------------------------------------------------------------------------

// The rows filled so far, as the squares of the next row that they attack: one bit per column,
// so a child board is three ors and two shifts and a task copies it for nothing.
struct queens_board {
  std::uint32_t columns = 0;
  std::uint32_t diagonals_down_left = 0;   // moves one column left per row
  std::uint32_t diagonals_down_right = 0;  // moves one column right per row
  int rows = 0;

  [[nodiscard]] queens_board with_queen_at(std::uint32_t column_bit) const {
    return {columns | column_bit, (diagonals_down_left | column_bit) >> 1, (diagonals_down_right | column_bit) << 1,
            rows + 1};
  }
};

struct queens_placements {
  std::array<std::uint32_t, queens_n> column_bits;  // the safe squares of the next row
  int count = 0;
};

queens_placements safe_placements(const queens_board& board) {
  queens_placements safe;
  const std::uint32_t attacked = board.columns | board.diagonals_down_left | board.diagonals_down_right;
  std::uint32_t free = ~attacked & ((1U << queens_n) - 1);
  for (; free != 0; free &= free - 1) safe.column_bits[static_cast<std::size_t>(safe.count++)] = free & -free;
  return safe;
}

std::int64_t queens_serial(const queens_board& board) {
  if (board.rows == queens_n) return 1;
  const queens_placements safe = safe_placements(board);
  std::int64_t solutions = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(safe.count); ++i) {
    solutions += queens_serial(board.with_queen_at(safe.column_bits[i]));
  }
  return solutions;
}

std::int64_t queens_tidepool(tidepool::pool& p, const queens_board& board) {
  if (board.rows == queens_n) return 1;
  const queens_placements safe = safe_placements(board);
  return tidepool::parallel_reduce(
      p, 0, safe.count, std::int64_t{0},
      [&](int i) { return queens_tidepool(p, board.with_queen_at(safe.column_bits[static_cast<std::size_t>(i)])); },
      std::plus<>(), 1);
}

tidepool::co_task<std::int64_t> queens_coro(queens_board board) {
  if (board.rows == queens_n) co_return 1;
  const queens_placements safe = safe_placements(board);
  if (safe.count == 0) co_return 0;
  auto child = [&](int i) { return queens_coro(board.with_queen_at(safe.column_bits[static_cast<std::size_t>(i)])); };
  if (safe.count == 1) co_return co_await child(0);
  auto [low, high] = co_await sum_halves<std::int64_t>(0, safe.count, child);
  co_return low + high;
}

tidepool::co_task<std::int64_t> queens_coro_serial(queens_board board) {
  if (board.rows == queens_n) co_return 1;
  const queens_placements safe = safe_placements(board);
  std::int64_t solutions = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(safe.count); ++i) {
    solutions += co_await queens_coro_serial(board.with_queen_at(safe.column_bits[i]));
  }
  co_return solutions;
}

// One group per board that has a safe square (as parallel_reduce forks nothing for a dead end):
// every safe square but the first is a task, the first is done here.
template <class Group, class Recurse>
std::int64_t queens_in_group(Group& g, const queens_board& board, const queens_placements& safe, Recurse recurse) {
  std::array<std::int64_t, queens_n> solutions{};
  auto child = [&](std::size_t i) { solutions[i] = recurse(board.with_queen_at(safe.column_bits[i])); };
  for (std::size_t i = 1; i < static_cast<std::size_t>(safe.count); ++i) g.run_child([&child, i] { child(i); });
  child(0);
  g.wait();
  std::int64_t sum = 0;
  for (std::int64_t s : solutions) sum += s;
  return sum;
}

// task_group::go and tbb::task_group::run under one name, for queens_in_group and uts_in_group.
struct tidepool_group_adapter {
  tidepool::task_group group;
  template <class F>
  void run_child(F&& f) {
    group.go(std::forward<F>(f));
  }
  void wait() { group.wait(); }
};

struct tbb_group_adapter {
  tbb::task_group group;
  template <class F>
  void run_child(F&& f) {
    group.run(std::forward<F>(f));
  }
  void wait() { group.wait(); }
};

std::int64_t queens_tidepool_group(tidepool::pool& p, const queens_board& board) {
  if (board.rows == queens_n) return 1;
  const queens_placements safe = safe_placements(board);
  if (safe.count == 0) return 0;
  tidepool_group_adapter g{tidepool::task_group(p)};
  return queens_in_group(g, board, safe, [&p](const queens_board& b) { return queens_tidepool_group(p, b); });
}

std::int64_t queens_tbb_group(const queens_board& board) {
  if (board.rows == queens_n) return 1;
  const queens_placements safe = safe_placements(board);
  if (safe.count == 0) return 0;
  tbb_group_adapter g;
  return queens_in_group(g, board, safe, [](const queens_board& b) { return queens_tbb_group(b); });
}

// ---- uts --------------------------------------------------------------------------------------

namespace uts = tidepool::perf::uts;

uts::tree_size uts_serial(const uts::node& node) { return uts::count_serial(uts::t1, node); }

uts::tree_size uts_tidepool(tidepool::pool& p, const uts::node& node) {
  const int children = uts::child_count(uts::t1, node);
  const uts::tree_size itself = uts::tree_size::of_node(node, children);
  return tidepool::parallel_reduce(
      p, 0, children, itself, [&](int i) { return uts_tidepool(p, uts::child(node, i)); }, std::plus<>(), 1);
}

tidepool::co_task<uts::tree_size> uts_coro(uts::node node) {
  const int children = uts::child_count(uts::t1, node);
  const uts::tree_size itself = uts::tree_size::of_node(node, children);
  if (children == 0) co_return itself;
  auto child = [&](int i) { return uts_coro(uts::child(node, i)); };
  if (children == 1) co_return itself + co_await child(0);
  auto [low, high] = co_await sum_halves<uts::tree_size>(0, children, child);
  co_return itself + low + high;
}

tidepool::co_task<uts::tree_size> uts_coro_serial(uts::node node) {
  const int children = uts::child_count(uts::t1, node);
  uts::tree_size size = uts::tree_size::of_node(node, children);
  for (int i = 0; i < children; ++i) size = size + co_await uts_coro_serial(uts::child(node, i));
  co_return size;
}

// As queens_in_group: for a node with children, every child but the first is a task.
template <class Group, class Recurse>
uts::tree_size uts_in_group(Group& g, const uts::node& node, int children, Recurse recurse) {
  std::array<uts::tree_size, uts::max_children> sizes;
  auto child = [&](int i) { sizes[static_cast<std::size_t>(i)] = recurse(uts::child(node, i)); };
  for (int i = 1; i < children; ++i) g.run_child([&child, i] { child(i); });
  child(0);
  g.wait();
  uts::tree_size size = uts::tree_size::of_node(node, children);
  for (int i = 0; i < children; ++i) size = size + sizes[static_cast<std::size_t>(i)];
  return size;
}

uts::tree_size uts_tidepool_group(tidepool::pool& p, const uts::node& node) {
  const int children = uts::child_count(uts::t1, node);
  if (children == 0) return uts::tree_size::of_node(node, 0);
  tidepool_group_adapter g{tidepool::task_group(p)};
  return uts_in_group(g, node, children, [&p](const uts::node& n) { return uts_tidepool_group(p, n); });
}

uts::tree_size uts_tbb_group(const uts::node& node) {
  const int children = uts::child_count(uts::t1, node);
  if (children == 0) return uts::tree_size::of_node(node, 0);
  tbb_group_adapter g;
  return uts_in_group(g, node, children, [](const uts::node& n) { return uts_tbb_group(n); });
}

// ---- matmul -----------------------------------------------------------------------------------

// Square blocks of matmul_n × matmul_n row-major matrices, named by their top-left element.
void multiply_block(double* c, const double* a, const double* b, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) {
    for (std::size_t k = 0; k < size; ++k) {
      const double a_ik = a[i * matmul_n + k];
      for (std::size_t j = 0; j < size; ++j) c[i * matmul_n + j] += a_ik * b[k * matmul_n + j];
    }
  }
}

// C += A·B: C's quadrants are independent, and each is the sum of two half-products, which
// write the same elements and so follow one another.
template <class Fork>
void multiply(double* c, const double* a, const double* b, std::size_t size, const Fork& fork) {
  if (size <= matmul_leaf) {
    multiply_block(c, a, b, size);
    return;
  }
  const std::size_t half = size / 2;
  auto quadrant = [half](auto* m, std::size_t row, std::size_t column) { return m + (row * matmul_n + column) * half; };
  auto c_quadrant = [&](std::size_t row, std::size_t column) {
    multiply(quadrant(c, row, column), quadrant(a, row, 0), quadrant(b, 0, column), half, fork);
    multiply(quadrant(c, row, column), quadrant(a, row, 1), quadrant(b, 1, column), half, fork);
  };
  fork([&] { c_quadrant(0, 0); }, [&] { c_quadrant(0, 1); }, [&] { c_quadrant(1, 0); }, [&] { c_quadrant(1, 1); });
}

// The coroutine version: the four quadrants in one when_all.
tidepool::co_task<void> multiply_coro(double* c, const double* a, const double* b, std::size_t size) {
  if (size <= matmul_leaf) {
    multiply_block(c, a, b, size);
    co_return;
  }
  const std::size_t half = size / 2;
  auto quadrant = [half](auto* m, std::size_t row, std::size_t column) { return m + (row * matmul_n + column) * half; };
  auto c_quadrant = [&](std::size_t row, std::size_t column) -> tidepool::co_task<void> {
    co_await multiply_coro(quadrant(c, row, column), quadrant(a, row, 0), quadrant(b, 0, column), half);
    co_await multiply_coro(quadrant(c, row, column), quadrant(a, row, 1), quadrant(b, 1, column), half);
  };
  co_await tidepool::when_all(c_quadrant(0, 0), c_quadrant(0, 1), c_quadrant(1, 0), c_quadrant(1, 1));
}

struct matmul_matrices {
  std::vector<double> a;
  std::vector<double> b;
  std::vector<double> c;
  std::vector<double> expected;  // A·B by the plain triple loop, once
};

// Integers in [-4, 3]: every partial sum stays far below 2^53, so any order of the additions
// gives the exact product and the comparison can be ==.
double small_integer(std::size_t index, std::uint32_t salt) {
  const std::uint32_t mixed = (static_cast<std::uint32_t>(index) ^ salt) * 2'654'435'761U;
  return static_cast<double>(static_cast<int>(mixed >> 29) - 4);
}

matmul_matrices& matmul_data() {
  static matmul_matrices m = [] {
    matmul_matrices fresh;
    const std::size_t elements = matmul_n * matmul_n;
    fresh.a.resize(elements);
    fresh.b.resize(elements);
    for (std::size_t i = 0; i < elements; ++i) {
      fresh.a[i] = small_integer(i, 0x5bd1e995U);
      fresh.b[i] = small_integer(i, 0x1b873593U);
    }
    fresh.c.assign(elements, 0.0);
    fresh.expected.assign(elements, 0.0);
    for (std::size_t i = 0; i < matmul_n; ++i) {
      for (std::size_t k = 0; k < matmul_n; ++k) {
        for (std::size_t j = 0; j < matmul_n; ++j) {
          fresh.expected[i * matmul_n + j] += fresh.a[i * matmul_n + k] * fresh.b[k * matmul_n + j];
        }
      }
    }
    return fresh;
  }();
  return m;
}

// ---- for --------------------------------------------------------------------------------------

unsigned char for_value(std::size_t i) { return static_cast<unsigned char>(i * 7 + 1); }

std::vector<unsigned char>& for_buffer() {
  static std::vector<unsigned char> buffer;
  buffer.assign(for_n, 0);
  return buffer;
}

// Reads back one byte in 4099: enough to catch a skipped piece, cheap next to the run.
std::size_t for_checksum(const std::vector<unsigned char>& b) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < b.size(); i += 4099) sum += b[i];
  return sum;
}
std::size_t for_expected_checksum() {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < for_n; i += 4099) sum += for_value(i);
  return sum;
}

// body(i) for i in [first, last), halving the range down to `grain` indices; the leaves call
// `body` per index, as parallel_for does, so that only the scheduling differs.
template <class Body, class Fork>
void for_by_halves(std::size_t first, std::size_t last, std::size_t grain, const Body& body, const Fork& fork) {
  if (last - first <= grain) {
    for (; first < last; ++first) body(first);
    return;
  }
  const std::size_t middle = first + (last - first) / 2;
  fork([&] { for_by_halves(first, middle, grain, body, fork); },
       [&] { for_by_halves(middle, last, grain, body, fork); });
}

// ---- harness ----------------------------------------------------------------------------------

std::string describe(std::integral auto v) { return std::to_string(v); }
std::string describe(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}
std::string describe(const uts::tree_size& s) {
  return std::to_string(s.nodes) + " nodes, " + std::to_string(s.leaves) + " leaves, depth " + std::to_string(s.depth);
}

// The check of an answer that must equal `expected`: "" if it does, else what went wrong.
template <class T>
auto must_equal(const char* what, T expected) {
  return [what, expected](const T& answer) -> std::string {
    if (answer == expected) return {};
    return std::string(what) + " = " + describe(answer) + ", expected " + describe(expected);
  };
}

// The benchmark's label, the runner's configuration: "fib/2T".
std::string configuration(const std::string& workload, const benchmark::State& state) {
  return workload + "/" + std::to_string(state.range(0)) + "T";
}

// Runs `run` once per iteration, timed, and `check` on its answer, untimed. Reports the mean
// milliseconds per run ("ms", what the comparison runner reads) and runs per second ("runs/s",
// for the summary table, whose ratios read "higher is better").
template <class Run, class Check>
void measure(benchmark::State& state, const char* workload, Run run, Check check) {
  const std::string label = configuration(workload, state);
  state.SetLabel(label);
  double total_seconds = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    const auto answer = run();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    total_seconds += seconds;
    if (const std::string wrong = check(answer); !wrong.empty()) {
      // Also on stderr: the console shows only aggregates, which leave failed repetitions out.
      std::fprintf(stderr, "%s: wrong answer: %s\n", label.c_str(), wrong.c_str());
      state.SkipWithError(("wrong answer: " + wrong).c_str());
      return;
    }
  }
  const auto runs = static_cast<double>(state.iterations());
  state.counters["ms"] = total_seconds * 1e3 / runs;
  state.counters["runs/s"] = runs / total_seconds;
}

tidepool::pool_options workers(std::int64_t n) {
  tidepool::pool_options o;
  o.workers = static_cast<std::size_t>(n);
  return o;
}

// The TBB arena with exactly `threads` threads (the caller's included, as in TBB's own model).
struct tbb_threads {
  tbb::global_control limit;
  tbb::task_arena arena;
  explicit tbb_threads(std::int64_t threads)
      : limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads)),
        arena(static_cast<int>(threads)) {}
  template <class F>
  auto run(F&& f) {
    return arena.execute(std::forward<F>(f));
  }
};

// A run that enters the pool (or arena) once and computes `f` there: the recursion then forks
// from one of its workers, never from outside.
template <class F>
auto in_pool(tidepool::pool& p, F f) {
  return [&p, f] { return p.submit(f).get(); };
}
template <class F>
auto in_arena(tbb_threads& t, F f) {
  return [&t, f] { return t.run(f); };
}

void BM_Fib_Serial(benchmark::State& s) {
  measure(s, "fib", [] { return fib_serial(fib_n); }, must_equal("fib(30)", fib_answer));
}
void BM_Fib_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "fib", in_pool(p, [&] { return fib_tidepool(p, fib_n); }), must_equal("fib(30)", fib_answer));
}
void BM_Fib_TidepoolCoro(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "fib", [&] { return tidepool::sync_wait(p, fib_coro(fib_n)); }, must_equal("fib(30)", fib_answer));
}
void BM_Fib_TidepoolCoroSerial(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "fib", [&] { return tidepool::sync_wait(p, fib_coro_serial(fib_n)); }, must_equal("fib(30)", fib_answer));
}
void BM_Fib_TidepoolGroup(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "fib", in_pool(p, [&] { return fib_tidepool_group(p, fib_n); }), must_equal("fib(30)", fib_answer));
}
void BM_Fib_TbbGroup(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, "fib", in_arena(t, [] { return fib_tbb_group(fib_n); }), must_equal("fib(30)", fib_answer));
}
void BM_Fib_TbbInvoke(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, "fib", in_arena(t, [] { return fib_tbb_invoke(fib_n); }), must_equal("fib(30)", fib_answer));
}

auto skynet_check() { return must_equal("skynet(6)", skynet_answer); }

void BM_Skynet_Serial(benchmark::State& s) {
  measure(s, "skynet", [] { return skynet_serial(0, skynet_size); }, skynet_check());
}
void BM_Skynet_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "skynet", in_pool(p, [&] { return skynet_tidepool(p, 0, skynet_size); }), skynet_check());
}
void BM_Skynet_TidepoolCoro(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "skynet", [&] { return tidepool::sync_wait(p, skynet_coro(0, skynet_size)); }, skynet_check());
}
void BM_Skynet_TidepoolCoroSerial(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "skynet", [&] { return tidepool::sync_wait(p, skynet_coro_serial(0, skynet_size)); }, skynet_check());
}
void BM_Skynet_TidepoolGroup(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "skynet", in_pool(p, [&] { return skynet_tidepool_group(p, 0, skynet_size); }), skynet_check());
}
void BM_Skynet_TbbGroup(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, "skynet", in_arena(t, [] { return skynet_tbb_group(0, skynet_size); }), skynet_check());
}

auto queens_check() { return must_equal("nqueens(12)", queens_answer); }

void BM_Queens_Serial(benchmark::State& s) {
  measure(s, "nqueens", [] { return queens_serial({}); }, queens_check());
}
void BM_Queens_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "nqueens", in_pool(p, [&] { return queens_tidepool(p, {}); }), queens_check());
}
void BM_Queens_TidepoolCoro(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "nqueens", [&] { return tidepool::sync_wait(p, queens_coro({})); }, queens_check());
}
void BM_Queens_TidepoolCoroSerial(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "nqueens", [&] { return tidepool::sync_wait(p, queens_coro_serial({})); }, queens_check());
}
void BM_Queens_TidepoolGroup(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "nqueens", in_pool(p, [&] { return queens_tidepool_group(p, {}); }), queens_check());
}
void BM_Queens_TbbGroup(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, "nqueens", in_arena(t, [] { return queens_tbb_group({}); }), queens_check());
}

const uts::node& uts_root() {
  static const uts::node root = uts::root(uts::t1.root_seed);
  return root;
}
void BM_Uts_Serial(benchmark::State& s) {
  measure(s, "uts", [] { return uts_serial(uts_root()); }, must_equal("uts T1", uts::t1_size));
}
void BM_Uts_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "uts", in_pool(p, [&] { return uts_tidepool(p, uts_root()); }), must_equal("uts T1", uts::t1_size));
}
void BM_Uts_TidepoolCoro(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "uts", [&] { return tidepool::sync_wait(p, uts_coro(uts_root())); }, must_equal("uts T1", uts::t1_size));
}
void BM_Uts_TidepoolCoroSerial(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "uts", [&] { return tidepool::sync_wait(p, uts_coro_serial(uts_root())); }, must_equal("uts T1", uts::t1_size));
}
void BM_Uts_TidepoolGroup(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, "uts", in_pool(p, [&] { return uts_tidepool_group(p, uts_root()); }), must_equal("uts T1", uts::t1_size));
}
void BM_Uts_TbbGroup(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, "uts", in_arena(t, [] { return uts_tbb_group(uts_root()); }), must_equal("uts T1", uts::t1_size));
}

// Compares every element with the plain product, then clears C for the next run (untimed).
std::string check_and_clear_product(matmul_matrices* product) {
  matmul_matrices& m = *product;
  std::string wrong;
  std::size_t differing = 0;
  for (std::size_t i = 0; i < m.c.size(); ++i) {
    if (m.c[i] == m.expected[i]) continue;
    if (differing++ == 0) {
      wrong = "C[" + std::to_string(i / matmul_n) + "][" + std::to_string(i % matmul_n) + "] = " + describe(m.c[i]) +
              ", expected " + describe(m.expected[i]);
    }
  }
  if (differing > 0) {
    wrong += " (" + std::to_string(differing) + " of " + std::to_string(m.c.size()) + " elements differ)";
  }
  std::fill(m.c.begin(), m.c.end(), 0.0);
  return wrong;
}

template <class Fork>
auto matmul_run(matmul_matrices& m, Fork fork) {
  return [&m, fork] {
    multiply(m.c.data(), m.a.data(), m.b.data(), matmul_n, fork);
    return &m;
  };
}

void BM_Matmul_Serial(benchmark::State& s) {
  matmul_matrices& m = matmul_data();
  std::fill(m.c.begin(), m.c.end(), 0.0);
  measure(s, "matmul", matmul_run(m, serial_fork{}), check_and_clear_product);
}
void BM_Matmul_Tidepool(benchmark::State& s) {
  matmul_matrices& m = matmul_data();
  std::fill(m.c.begin(), m.c.end(), 0.0);
  tidepool::pool p(workers(s.range(0)));
  measure(s, "matmul", in_pool(p, matmul_run(m, tidepool_invoke_fork{p})), check_and_clear_product);
}
void BM_Matmul_TidepoolCoro(benchmark::State& s) {
  matmul_matrices& m = matmul_data();
  std::fill(m.c.begin(), m.c.end(), 0.0);
  tidepool::pool p(workers(s.range(0)));
  measure(s, "matmul", [&] {
    tidepool::sync_wait(p, multiply_coro(m.c.data(), m.a.data(), m.b.data(), matmul_n));
    return &m;
  }, check_and_clear_product);
}
void BM_Matmul_TidepoolGroup(benchmark::State& s) {
  matmul_matrices& m = matmul_data();
  std::fill(m.c.begin(), m.c.end(), 0.0);
  tidepool::pool p(workers(s.range(0)));
  measure(s, "matmul", in_pool(p, matmul_run(m, tidepool_group_fork{p})), check_and_clear_product);
}
void BM_Matmul_TbbGroup(benchmark::State& s) {
  matmul_matrices& m = matmul_data();
  std::fill(m.c.begin(), m.c.end(), 0.0);
  tbb_threads t(s.range(0));
  measure(s, "matmul", in_arena(t, matmul_run(m, tbb_group_fork{})), check_and_clear_product);
}

// The pieces for_by_halves cuts the range into: as many as tidepool's parallel_for makes when
// nobody steals (8 per thread), so the task_group versions are not handicapped by their grain.
std::size_t for_grain(benchmark::State& s) { return for_n / (8 * static_cast<std::size_t>(s.range(0))); }

void BM_For_Serial(benchmark::State& s) {
  auto& b = for_buffer();
  measure(s, "for", [&] {
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = for_value(i);
    return for_checksum(b);
  }, must_equal("for checksum", for_expected_checksum()));
}
void BM_For_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  auto& b = for_buffer();
  measure(s, "for", [&] {
    tidepool::parallel_for(p, std::size_t{0}, b.size(), [&](std::size_t i) { b[i] = for_value(i); });
    return for_checksum(b);
  }, must_equal("for checksum", for_expected_checksum()));
}
void BM_For_TidepoolGroup(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  auto& b = for_buffer();
  const std::size_t grain = for_grain(s);
  measure(s, "for", [&] {
    auto store = [&](std::size_t i) { b[i] = for_value(i); };
    p.submit([&] { for_by_halves(0, b.size(), grain, store, tidepool_group_fork{p}); }).get();
    return for_checksum(b);
  }, must_equal("for checksum", for_expected_checksum()));
}
void BM_For_Tbb(benchmark::State& s) {
  tbb_threads t(s.range(0));
  auto& b = for_buffer();
  measure(s, "for", [&] {
    t.run([&] { tbb::parallel_for(std::size_t{0}, b.size(), [&](std::size_t i) { b[i] = for_value(i); }); });
    return for_checksum(b);
  }, must_equal("for checksum", for_expected_checksum()));
}
void BM_For_TbbGroup(benchmark::State& s) {
  tbb_threads t(s.range(0));
  auto& b = for_buffer();
  const std::size_t grain = for_grain(s);
  measure(s, "for", [&] {
    auto store = [&](std::size_t i) { b[i] = for_value(i); };
    t.run([&] { for_by_halves(0, b.size(), grain, store, tbb_group_fork{}); });
    return for_checksum(b);
  }, must_equal("for checksum", for_expected_checksum()));
}

// Listed so that the report shows why these pools have no figure for the recursive workloads.
constexpr const char* unsupported_reason =
    "unsupported: a task that waits for its children blocks its worker thread (no helping wait), so nested "
    "fork-join deadlocks once every worker waits";

void unsupported(benchmark::State& s, const std::string& workload) {
  s.SetLabel(configuration(workload, s));  // the row of the report where the reason goes
  s.SkipWithError(unsupported_reason);
}

void register_benchmarks(bool quick) {
  auto add = [quick](const std::string& name, auto function) {
    tidepool::perf::register_per_thread_count(name, function, g_max_threads, quick);
  };
  // A variant that forks nothing gains nothing from more threads: 1 thread, full mode only.
  auto add_one_thread = [quick](const std::string& name, auto function) {
    if (!quick) tidepool::perf::register_per_thread_count(name, function, 1, false);
  };
  add("fib/tidepool", BM_Fib_Tidepool);
  add("fib/tidepool_coro", BM_Fib_TidepoolCoro);
  add("fib/tidepool_group", BM_Fib_TidepoolGroup);
  add_one_thread("fib/tidepool_coro_serial", BM_Fib_TidepoolCoroSerial);
  add("fib/tbb_group", BM_Fib_TbbGroup);
  add("fib/tbb_invoke", BM_Fib_TbbInvoke);
  add("fib/serial", BM_Fib_Serial);
  add("skynet/tidepool", BM_Skynet_Tidepool);
  add("skynet/tidepool_coro", BM_Skynet_TidepoolCoro);
  add("skynet/tidepool_group", BM_Skynet_TidepoolGroup);
  add_one_thread("skynet/tidepool_coro_serial", BM_Skynet_TidepoolCoroSerial);
  add("skynet/tbb_group", BM_Skynet_TbbGroup);
  add("skynet/serial", BM_Skynet_Serial);
  add("nqueens/tidepool", BM_Queens_Tidepool);
  add("nqueens/tidepool_coro", BM_Queens_TidepoolCoro);
  add("nqueens/tidepool_group", BM_Queens_TidepoolGroup);
  add_one_thread("nqueens/tidepool_coro_serial", BM_Queens_TidepoolCoroSerial);
  add("nqueens/tbb_group", BM_Queens_TbbGroup);
  add("nqueens/serial", BM_Queens_Serial);
  add("uts/tidepool", BM_Uts_Tidepool);
  add("uts/tidepool_coro", BM_Uts_TidepoolCoro);
  add("uts/tidepool_group", BM_Uts_TidepoolGroup);
  add_one_thread("uts/tidepool_coro_serial", BM_Uts_TidepoolCoroSerial);
  add("uts/tbb_group", BM_Uts_TbbGroup);
  add("uts/serial", BM_Uts_Serial);
  add("matmul/tidepool", BM_Matmul_Tidepool);
  add("matmul/tidepool_coro", BM_Matmul_TidepoolCoro);
  add("matmul/tidepool_group", BM_Matmul_TidepoolGroup);
  add("matmul/tbb_group", BM_Matmul_TbbGroup);
  add("matmul/serial", BM_Matmul_Serial);
  add("for/tidepool", BM_For_Tidepool);
  add("for/tidepool_group", BM_For_TidepoolGroup);
  add("for/tbb", BM_For_Tbb);
  add("for/tbb_group", BM_For_TbbGroup);
  add("for/serial", BM_For_Serial);
  for (const std::string workload : {"fib", "skynet", "nqueens", "uts", "matmul"}) {
    for (const char* pool : {"/asio_pool", "/mutex_pool"}) {
      add(workload + pool, [workload](benchmark::State& s) { unsupported(s, workload); });
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  tidepool::perf::summary_reporter reporter("runs/s", "runs per second (one whole workload per run)");
  // --quick: at least 50 ms per repetition; the slowest runs (uts serial, ~1 s) are one
  // iteration per repetition either way.
  return tidepool::perf::benchmark_main(argc, argv, {"--threads=", &g_max_threads, 2, "up to %zu threads"}, reporter,
                                        {.register_benchmarks = register_benchmarks, .quick_min_time = "0.05"});
}
