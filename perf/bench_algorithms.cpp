// Compute kernels: tidepool's partitioners, parallel_sort, parallel_inclusive_scan and
// blocked_range2d against oneTBB's (tbb::parallel_for with its partitioners, tbb::parallel_sort,
// tbb::parallel_scan, tbb::blocked_range2d), libstdc++'s parallel algorithms (std::execution::par,
// which run on oneTBB here) and the serial code, in one binary and one run.
//
//   pfor         10^8 byte stores, b[i] = 7i + 1: a memory-bound loop where how the range is
//                cut is all that differs (auto / static / simple with a 64 Ki-index grain)
//   sort_int     10^7 random 32-bit unsigned ints (fixed seed), ascending
//   sort_string  10^6 random strings of 4 to 24 letters (fixed seed), ascending
//   scan         inclusive prefix sum of 10^8 32-bit unsigned ints (wrapping), into a second array
//   jacobi       4096×4096 doubles, 10 sweeps of the 4-point average into a second grid, the
//                border fixed; tiles from a 2-D range
//   matmul2d     C = A·B, 512×512 doubles holding small integers (exact), C's tiles from a 2-D
//                range, each tile i-k-j; bench_forkjoin's matmul row is the recursive version
//   pfor_writer  not a comparison: pfor's loop with the buffer written by the caller or by the
//                pool, run by parallel_for, by one task, or on the caller (see its code)
//
// Every run checks its answer outside the timed region (sorts: equal to std::sort's; scan:
// every 4099th prefix; jacobi and matmul2d: bit for bit against the serial result); a wrong
// answer fails the benchmark. Inputs are restored between runs, untimed.
//
//   perf/bench_algorithms [--quick] [--threads=N] [google-benchmark flags]
//
// Threads: 1, 2, 4, ... and N (default 2); oneTBB and std::execution::par are limited to the
// same count (tbb::global_control), tidepool runs a pool of that many workers. --quick: N
// threads only, 3 repetitions.

#include <benchmark/benchmark.h>
#include <oneapi/tbb/blocked_range.h>     // for tbb::blocked_range
#include <oneapi/tbb/blocked_range2d.h>   // for tbb::blocked_range2d
#include <oneapi/tbb/global_control.h>    // for tbb::global_control
#include <oneapi/tbb/parallel_for.h>      // for tbb::parallel_for
#include <oneapi/tbb/parallel_scan.h>     // for tbb::parallel_scan
#include <oneapi/tbb/parallel_sort.h>     // for tbb::parallel_sort
#include <oneapi/tbb/partitioner.h>       // for tbb::static_partitioner, tbb::simple_partitioner
#include <oneapi/tbb/task_arena.h>        // for tbb::task_arena

#include <algorithm>   // for std::sort, std::copy
#include <chrono>      // for std::chrono::steady_clock
#include <cstddef>     // for std::size_t
#include <cstdint>     // for std::uint32_t, std::int64_t
#include <cstdio>      // for std::fprintf
#include <execution>   // for std::execution::par
#include <functional>  // for std::plus
#include <numeric>     // for std::inclusive_scan
#include <random>      // for std::mt19937
#include <string>      // for std::string, std::to_string
#include <utility>     // for std::forward, std::move
#include <vector>      // for std::vector

#include "bench_main.hpp"
#include "tidepool/tidepool.hpp"

namespace {

std::size_t g_max_threads = 2;

constexpr std::size_t pfor_n = 100'000'000;
constexpr std::size_t pfor_grain = 1 << 16;  // the simple partitioners' grain, both libraries
constexpr std::size_t sort_int_n = 10'000'000;
constexpr std::size_t sort_string_n = 1'000'000;
constexpr std::size_t scan_n = 100'000'000;
constexpr std::size_t sample_every = 4099;  // checks read back this sparse a sample
constexpr int grid_n = 4096;
constexpr int jacobi_sweeps = 10;
constexpr std::size_t matmul_n = 512;

// ---- harness ----------------------------------------------------------------------------------

// One configured run of a workload: "sort_int/2T".
std::string label_of(const char* workload, const benchmark::State& state) {
  return std::string(workload) + "/" + std::to_string(state.range(0)) + "T";
}

// Per iteration: prepare() untimed, run() timed, check() untimed ("" when right). Reports "ms"
// per run (what tools/compare reads) and "runs/s" (for the summary table).
template <class Prepare, class Run, class Check>
void timed(benchmark::State& state, const char* workload, Prepare prepare, Run run, Check check) {
  const std::string label = label_of(workload, state);
  state.SetLabel(label);
  double total_seconds = 0;
  for (auto _ : state) {
    prepare();
    const auto start = std::chrono::steady_clock::now();
    run();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    total_seconds += seconds;
    if (const std::string wrong = check(); !wrong.empty()) {
      std::fprintf(stderr, "%s: wrong answer: %s\n", label.c_str(), wrong.c_str());
      state.SkipWithError(("wrong answer: " + wrong).c_str());
      return;
    }
  }
  const auto runs = static_cast<double>(state.iterations());
  state.counters["ms"] = total_seconds * 1e3 / runs;
  state.counters["runs/s"] = runs / total_seconds;
}

std::size_t threads_of(const benchmark::State& s) { return static_cast<std::size_t>(s.range(0)); }

tidepool::pool_options workers(const benchmark::State& s) {
  tidepool::pool_options o;
  o.workers = threads_of(s);
  return o;
}

// oneTBB (and std::execution::par, which runs on it) with exactly `threads` threads.
struct tbb_threads {
  tbb::global_control limit;
  tbb::task_arena arena;
  explicit tbb_threads(const benchmark::State& s)
      : limit(tbb::global_control::max_allowed_parallelism, threads_of(s)), arena(static_cast<int>(threads_of(s))) {}
  template <class F>
  void run(F&& f) {
    arena.execute(std::forward<F>(f));
  }
};

// ---- pfor -------------------------------------------------------------------------------------

unsigned char pfor_value(std::size_t i) { return static_cast<unsigned char>(i * 7 + 1); }

std::vector<unsigned char>& pfor_buffer() {
  static std::vector<unsigned char> buffer(pfor_n);
  return buffer;
}

void pfor_clear() { std::fill(pfor_buffer().begin(), pfor_buffer().end(), 0); }

std::string pfor_check() {
  const auto& b = pfor_buffer();
  for (std::size_t i = 0; i < b.size(); i += sample_every) {
    if (b[i] != pfor_value(i)) return "b[" + std::to_string(i) + "] not stored";
  }
  return b.back() == pfor_value(b.size() - 1) ? "" : "the last byte not stored";
}

// Every variant writes through a pointer it holds itself, as a careful user of each library
// would: a byte store may alias anything, so a loop that reads the pointer out of the vector (or
// out of an object the loop cannot see) reloads it after every store and is never vectorised,
// which would measure one scalar store per cycle, not how the range is cut.

template <class Partitioner>
void BM_Pfor_Tidepool(benchmark::State& s, Partitioner part) {
  tidepool::pool p(workers(s));
  auto& b = pfor_buffer();
  timed(s, "pfor", pfor_clear, [&] {
    tidepool::parallel_for(p, std::size_t{0}, b.size(), [out = b.data()](std::size_t i) { out[i] = pfor_value(i); }, part);
  }, pfor_check);
}

template <class Partitioner>
void BM_Pfor_Tbb(benchmark::State& s, std::size_t grain, Partitioner part) {
  tbb_threads t(s);
  auto& b = pfor_buffer();
  timed(s, "pfor", pfor_clear, [&] {
    t.run([&] {
      tbb::parallel_for(tbb::blocked_range<std::size_t>(0, b.size(), grain), [data = b.data()](const tbb::blocked_range<std::size_t>& r) {
        unsigned char* const out = data;  // a local: the body object lives in a task oneTBB owns
        for (std::size_t i = r.begin(), stop = r.end(); i != stop; ++i) out[i] = pfor_value(i);
      }, part);
    });
  }, pfor_check);
}

void BM_Pfor_TbbAffinity(benchmark::State& s) {
  tbb::affinity_partitioner affinity;  // replays the same mapping on every run, as meant
  BM_Pfor_Tbb<tbb::affinity_partitioner&>(s, 1, affinity);
}

void BM_Pfor_Serial(benchmark::State& s) {
  auto& b = pfor_buffer();
  timed(s, "pfor", pfor_clear, [&] {
    unsigned char* const out = b.data();
    for (std::size_t i = 0, stop = b.size(); i < stop; ++i) out[i] = pfor_value(i);
  }, pfor_check);
}

// pfor_writer: why tidepool's 1-thread pfor trails oneTBB's. The same loop, with the buffer
// written (untimed, as pfor_clear does) by the caller or by a task on the pool's workers, and run
// by tidepool::parallel_for, by one plain task (submit), or on the caller. oneTBB runs a
// parallel_for on its caller; from outside the pool, tidepool runs it on a worker while the
// caller blocks, and the loop is fastest on the thread that last wrote the buffer.

enum class pfor_writer { caller, pool };

// pfor_clear, run by the caller or by a task on p.
auto clear_by(tidepool::pool& p, pfor_writer writer) {
  return [&p, writer] {
    if (writer == pfor_writer::caller) {
      pfor_clear();
    } else {
      p.submit(pfor_clear).get();
    }
  };
}

enum class pfor_runner { caller_loop, one_task, parallel_for };

void BM_PforWriter(benchmark::State& s, pfor_writer writer, pfor_runner runner) {
  tidepool::pool p(workers(s));
  auto& b = pfor_buffer();
  timed(s, "pfor_writer", clear_by(p, writer), [&] {
    unsigned char* const out = b.data();
    const std::size_t n = b.size();
    switch (runner) {
      case pfor_runner::caller_loop:
        for (std::size_t i = 0; i < n; ++i) out[i] = pfor_value(i);
        break;
      case pfor_runner::one_task:
        p.submit([data = out, size = n] {
          // Locals: a byte store may alias the closure's members, which would be reloaded after
          // every store (see pfor above).
          unsigned char* const to = data;
          const std::size_t count = size;
          for (std::size_t i = 0; i < count; ++i) to[i] = pfor_value(i);
        }).get();
        break;
      case pfor_runner::parallel_for:
        tidepool::parallel_for(p, std::size_t{0}, n, [out](std::size_t i) { out[i] = pfor_value(i); });
        break;
    }
  }, pfor_check);
}

// ---- sort -------------------------------------------------------------------------------------

template <class T>
struct sort_data {
  std::vector<T> input;
  std::vector<T> sorted;  // by std::sort, once
  std::vector<T> work;
};

sort_data<std::uint32_t>& ints() {
  static sort_data<std::uint32_t> d = [] {
    sort_data<std::uint32_t> fresh;
    std::mt19937 random(20261129);
    fresh.input.resize(sort_int_n);
    for (auto& x : fresh.input) x = static_cast<std::uint32_t>(random());
    fresh.sorted = fresh.input;
    std::sort(fresh.sorted.begin(), fresh.sorted.end());
    return fresh;
  }();
  return d;
}

sort_data<std::string>& strings() {
  static sort_data<std::string> d = [] {
    sort_data<std::string> fresh;
    std::mt19937 random(42);
    fresh.input.resize(sort_string_n);
    for (auto& s : fresh.input) {
      s.resize(4 + random() % 21);
      for (char& c : s) c = static_cast<char>('a' + random() % 26);
    }
    fresh.sorted = fresh.input;
    std::sort(fresh.sorted.begin(), fresh.sorted.end());
    return fresh;
  }();
  return d;
}

// The benchmark of one sort: `sort(first, last)` on a fresh copy of the input each run.
template <class T, class Sort>
void sort_benchmark(benchmark::State& s, const char* workload, sort_data<T>& d, Sort sort) {
  timed(s, workload, [&] { d.work = d.input; }, [&] { sort(d.work.begin(), d.work.end()); },
        [&]() -> std::string { return d.work == d.sorted ? "" : "differs from std::sort's order"; });
}

template <class T>
void BM_Sort_Tidepool(benchmark::State& s, const char* workload, sort_data<T>& (*data)()) {
  tidepool::pool p(workers(s));
  sort_benchmark(s, workload, data(), [&](auto first, auto last) { tidepool::parallel_sort(p, first, last); });
}
template <class T>
void BM_Sort_Tbb(benchmark::State& s, const char* workload, sort_data<T>& (*data)()) {
  tbb_threads t(s);
  sort_benchmark(s, workload, data(), [&](auto first, auto last) { t.run([&] { tbb::parallel_sort(first, last); }); });
}
template <class T>
void BM_Sort_StdPar(benchmark::State& s, const char* workload, sort_data<T>& (*data)()) {
  tbb_threads t(s);
  sort_benchmark(s, workload, data(), [&](auto first, auto last) { std::sort(std::execution::par, first, last); });
}
template <class T>
void BM_Sort_Serial(benchmark::State& s, const char* workload, sort_data<T>& (*data)()) {
  sort_benchmark(s, workload, data(), [](auto first, auto last) { std::sort(first, last); });
}

// ---- scan -------------------------------------------------------------------------------------

struct scan_data {
  std::vector<std::uint32_t> in;
  std::vector<std::uint32_t> out;
  std::vector<std::uint32_t> sampled;  // the expected out[k] for every k a multiple of sample_every
};

scan_data& scan_arrays() {
  static scan_data d = [] {
    scan_data fresh;
    fresh.in.resize(scan_n);
    fresh.out.resize(scan_n);
    std::uint32_t sum = 0;
    for (std::size_t k = 0; k < scan_n; ++k) {
      fresh.in[k] = static_cast<std::uint32_t>(k * 2654435761U >> 20);
      sum += fresh.in[k];
      if (k % sample_every == 0) fresh.sampled.push_back(sum);
    }
    return fresh;
  }();
  return d;
}

template <class Run>
void scan_benchmark(benchmark::State& s, Run run) {
  scan_data& d = scan_arrays();
  timed(s, "scan", [&] { std::fill(d.out.begin(), d.out.end(), 0U); }, [&] { run(d); }, [&]() -> std::string {
    for (std::size_t k = 0; k < scan_n; k += sample_every) {
      if (d.out[k] != d.sampled[k / sample_every]) return "out[" + std::to_string(k) + "] wrong";
    }
    return "";
  });
}

void BM_Scan_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s));
  scan_benchmark(s, [&](scan_data& d) {
    tidepool::parallel_inclusive_scan(p, d.in.begin(), d.in.end(), d.out.begin(), std::plus<>(), std::uint32_t{0});
  });
}
void BM_Scan_Tbb(benchmark::State& s) {
  tbb_threads t(s);
  scan_benchmark(s, [&](scan_data& d) {
    t.run([&] {
      tbb::parallel_scan(
          tbb::blocked_range<std::size_t>(0, scan_n), std::uint32_t{0},
          [&](const tbb::blocked_range<std::size_t>& r, std::uint32_t sum, bool is_final) {
            for (std::size_t k = r.begin(); k != r.end(); ++k) {
              sum += d.in[k];
              if (is_final) d.out[k] = sum;
            }
            return sum;
          },
          std::plus<>());
    });
  });
}
void BM_Scan_StdPar(benchmark::State& s) {
  tbb_threads t(s);
  scan_benchmark(s, [](scan_data& d) { std::inclusive_scan(std::execution::par, d.in.begin(), d.in.end(), d.out.begin()); });
}
void BM_Scan_Serial(benchmark::State& s) {
  scan_benchmark(s, [](scan_data& d) { std::inclusive_scan(d.in.begin(), d.in.end(), d.out.begin()); });
}

// ---- jacobi -----------------------------------------------------------------------------------

struct grids {
  std::vector<double> start;     // hot left border, the rest cold
  std::vector<double> current;
  std::vector<double> next;
  std::vector<double> expected;  // after the sweeps, serially, once
};

// One tile of one sweep: next = the 4-point average of current, over rows × cols (interior).
// Not inlined, here and in multiply_tile: every variant then runs the same machine code for the
// kernel, and only how the range is cut differs. Inlined, each call site was compiled on its own
// and the copies differed by chance (matmul2d's tidepool copy ran 25% faster than the serial and
// oneTBB ones at one thread, until an unrelated edit elsewhere in this file took that away).
[[gnu::noinline]] void jacobi_tile(const double* current, double* next, int row_begin, int row_end, int col_begin, int col_end) {
  for (int i = row_begin; i < row_end; ++i) {
    const double* up = current + (i - 1) * grid_n;
    const double* here = current + i * grid_n;
    const double* down = current + (i + 1) * grid_n;
    double* out = next + i * grid_n;
    for (int j = col_begin; j < col_end; ++j) out[j] = 0.25 * (up[j] + down[j] + here[j - 1] + here[j + 1]);
  }
}

// `sweep(current, next)` computes one sweep over the interior; the grids swap after each.
template <class Sweep>
void jacobi_run(grids& g, Sweep sweep) {
  for (int k = 0; k < jacobi_sweeps; ++k) {
    sweep(g.current.data(), g.next.data());
    g.current.swap(g.next);
  }
}

grids& jacobi_grids() {
  static grids g = [] {
    grids fresh;
    fresh.start.assign(static_cast<std::size_t>(grid_n) * grid_n, 0.0);
    for (int i = 0; i < grid_n; ++i) fresh.start[static_cast<std::size_t>(i) * grid_n] = 100.0;
    fresh.current = fresh.start;
    fresh.next = fresh.start;
    jacobi_run(fresh, [](const double* c, double* n) { jacobi_tile(c, n, 1, grid_n - 1, 1, grid_n - 1); });
    fresh.expected = fresh.current;
    return fresh;
  }();
  return g;
}

template <class Sweep>
void jacobi_benchmark(benchmark::State& s, Sweep sweep) {
  grids& g = jacobi_grids();
  timed(s, "jacobi", [&] {
    g.current = g.start;
    g.next = g.start;
  }, [&] { jacobi_run(g, sweep); }, [&]() -> std::string { return g.current == g.expected ? "" : "grid differs from the serial sweeps"; });
}

template <class Partitioner>
void BM_Jacobi_Tidepool(benchmark::State& s, Partitioner part) {
  tidepool::pool p(workers(s));
  jacobi_benchmark(s, [&](const double* c, double* n) {
    tidepool::parallel_for(p, tidepool::blocked_range2d<int>(1, grid_n - 1, 1, grid_n - 1),
                           [&](tidepool::index_range<int> rows, tidepool::index_range<int> cols) {
                             jacobi_tile(c, n, rows.first(), rows.last(), cols.first(), cols.last());
                           }, part);
  });
}
template <class Partitioner>
void BM_Jacobi_Tbb(benchmark::State& s, Partitioner part) {
  tbb_threads t(s);
  jacobi_benchmark(s, [&](const double* c, double* n) {
    t.run([&] {
      tbb::parallel_for(tbb::blocked_range2d<int>(1, grid_n - 1, 1, grid_n - 1), [&](const tbb::blocked_range2d<int>& r) {
        jacobi_tile(c, n, r.rows().begin(), r.rows().end(), r.cols().begin(), r.cols().end());
      }, part);
    });
  });
}
void BM_Jacobi_Serial(benchmark::State& s) {
  jacobi_benchmark(s, [](const double* c, double* n) { jacobi_tile(c, n, 1, grid_n - 1, 1, grid_n - 1); });
}

// ---- matmul2d ---------------------------------------------------------------------------------

struct matrices {
  std::vector<double> a;
  std::vector<double> b;
  std::vector<double> c;
  std::vector<double> expected;
};

// C[rows, cols] = A[rows, :]·B[:, cols], i-k-j so the inner loop runs along rows of B and C.
[[gnu::noinline]] void multiply_tile(matrices& m, std::size_t row_begin, std::size_t row_end, std::size_t col_begin, std::size_t col_end) {
  for (std::size_t i = row_begin; i < row_end; ++i) {
    double* c = m.c.data() + i * matmul_n;
    for (std::size_t j = col_begin; j < col_end; ++j) c[j] = 0.0;
    for (std::size_t k = 0; k < matmul_n; ++k) {
      const double a = m.a[i * matmul_n + k];
      const double* b = m.b.data() + k * matmul_n;
      for (std::size_t j = col_begin; j < col_end; ++j) c[j] += a * b[j];
    }
  }
}

matrices& matmul_data() {
  static matrices m = [] {
    matrices fresh;
    const std::size_t elements = matmul_n * matmul_n;
    fresh.a.resize(elements);
    fresh.b.resize(elements);
    fresh.c.assign(elements, 0.0);
    // Integers in [-4, 3]: every sum is exact, so any tiling gives the same bits.
    for (std::size_t i = 0; i < elements; ++i) {
      fresh.a[i] = static_cast<double>(static_cast<int>((static_cast<std::uint32_t>(i) ^ 0x5bd1e995U) * 2654435761U >> 29) - 4);
      fresh.b[i] = static_cast<double>(static_cast<int>((static_cast<std::uint32_t>(i) ^ 0x1b873593U) * 2654435761U >> 29) - 4);
    }
    multiply_tile(fresh, 0, matmul_n, 0, matmul_n);
    fresh.expected = fresh.c;
    return fresh;
  }();
  return m;
}

template <class Run>
void matmul_benchmark(benchmark::State& s, Run run) {
  matrices& m = matmul_data();
  timed(s, "matmul2d", [&] { std::fill(m.c.begin(), m.c.end(), -1.0); }, [&] { run(m); },
        [&]() -> std::string { return m.c == m.expected ? "" : "C differs from the serial product"; });
}

void BM_Matmul2d_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s));
  matmul_benchmark(s, [&](matrices& m) {
    // Grains of 16 rows × 128 columns: a tile's slice of B (512 × 128 doubles, 512 KiB) stays in L2.
    tidepool::parallel_for(p, tidepool::blocked_range2d<std::size_t>(0, matmul_n, 16, 0, matmul_n, 128),
                           [&](tidepool::index_range<std::size_t> rows, tidepool::index_range<std::size_t> cols) {
                             multiply_tile(m, rows.first(), rows.last(), cols.first(), cols.last());
                           });
  });
}
void BM_Matmul2d_Tbb(benchmark::State& s) {
  tbb_threads t(s);
  matmul_benchmark(s, [&](matrices& m) {
    t.run([&] {
      tbb::parallel_for(tbb::blocked_range2d<std::size_t>(0, matmul_n, 16, 0, matmul_n, 128), [&](const tbb::blocked_range2d<std::size_t>& r) {
        multiply_tile(m, r.rows().begin(), r.rows().end(), r.cols().begin(), r.cols().end());
      });
    });
  });
}
void BM_Matmul2d_Serial(benchmark::State& s) {
  matmul_benchmark(s, [](matrices& m) { multiply_tile(m, 0, matmul_n, 0, matmul_n); });
}

// ---- registration -----------------------------------------------------------------------------

void register_benchmarks(bool quick) {
  auto add = [quick](const std::string& name, auto function) {
    tidepool::perf::register_per_thread_count(name, function, g_max_threads, quick);
  };
  // Within a workload tidepool and its peers alternate, so that a slow phase of the shared
  // machine falls on both.
  add("pfor/tidepool", [](benchmark::State& s) { BM_Pfor_Tidepool(s, tidepool::auto_partitioner{}); });
  add("pfor/tbb", [](benchmark::State& s) { BM_Pfor_Tbb(s, 1, tbb::auto_partitioner{}); });
  add("pfor/tidepool_static", [](benchmark::State& s) { BM_Pfor_Tidepool(s, tidepool::static_partitioner{}); });
  add("pfor/tbb_static", [](benchmark::State& s) { BM_Pfor_Tbb(s, 1, tbb::static_partitioner{}); });
  add("pfor/tidepool_simple", [](benchmark::State& s) { BM_Pfor_Tidepool(s, tidepool::simple_partitioner{pfor_grain}); });
  add("pfor/tbb_simple", [](benchmark::State& s) { BM_Pfor_Tbb(s, pfor_grain, tbb::simple_partitioner{}); });
  add("pfor/tbb_affinity", BM_Pfor_TbbAffinity);
  add("pfor/serial", BM_Pfor_Serial);
  // Not a peer comparison (tools/compare does not run it): see pfor_writer above.
  add("pfor_writer/caller_wrote/parallel_for", [](benchmark::State& s) { BM_PforWriter(s, pfor_writer::caller, pfor_runner::parallel_for); });
  add("pfor_writer/pool_wrote/parallel_for", [](benchmark::State& s) { BM_PforWriter(s, pfor_writer::pool, pfor_runner::parallel_for); });
  add("pfor_writer/caller_wrote/one_task", [](benchmark::State& s) { BM_PforWriter(s, pfor_writer::caller, pfor_runner::one_task); });
  add("pfor_writer/pool_wrote/one_task", [](benchmark::State& s) { BM_PforWriter(s, pfor_writer::pool, pfor_runner::one_task); });
  add("pfor_writer/caller_wrote/caller_loop", [](benchmark::State& s) { BM_PforWriter(s, pfor_writer::caller, pfor_runner::caller_loop); });
  add("pfor_writer/pool_wrote/caller_loop", [](benchmark::State& s) { BM_PforWriter(s, pfor_writer::pool, pfor_runner::caller_loop); });
  add("sort_int/tidepool", [](benchmark::State& s) { BM_Sort_Tidepool(s, "sort_int", ints); });
  add("sort_int/tbb", [](benchmark::State& s) { BM_Sort_Tbb(s, "sort_int", ints); });
  add("sort_int/std_par", [](benchmark::State& s) { BM_Sort_StdPar(s, "sort_int", ints); });
  add("sort_int/serial", [](benchmark::State& s) { BM_Sort_Serial(s, "sort_int", ints); });
  add("sort_string/tidepool", [](benchmark::State& s) { BM_Sort_Tidepool(s, "sort_string", strings); });
  add("sort_string/tbb", [](benchmark::State& s) { BM_Sort_Tbb(s, "sort_string", strings); });
  add("sort_string/std_par", [](benchmark::State& s) { BM_Sort_StdPar(s, "sort_string", strings); });
  add("sort_string/serial", [](benchmark::State& s) { BM_Sort_Serial(s, "sort_string", strings); });
  add("scan/tidepool", BM_Scan_Tidepool);
  add("scan/tbb", BM_Scan_Tbb);
  add("scan/std_par", BM_Scan_StdPar);
  add("scan/serial", BM_Scan_Serial);
  add("jacobi/tidepool", [](benchmark::State& s) { BM_Jacobi_Tidepool(s, tidepool::auto_partitioner{}); });
  add("jacobi/tbb", [](benchmark::State& s) { BM_Jacobi_Tbb(s, tbb::auto_partitioner{}); });
  add("jacobi/tidepool_static", [](benchmark::State& s) { BM_Jacobi_Tidepool(s, tidepool::static_partitioner{}); });
  add("jacobi/tbb_static", [](benchmark::State& s) { BM_Jacobi_Tbb(s, tbb::static_partitioner{}); });
  add("jacobi/serial", BM_Jacobi_Serial);
  add("matmul2d/tidepool", BM_Matmul2d_Tidepool);
  add("matmul2d/tbb", BM_Matmul2d_Tbb);
  add("matmul2d/serial", BM_Matmul2d_Serial);
}

}  // namespace

int main(int argc, char** argv) {
  tidepool::perf::summary_reporter reporter("runs/s", "runs per second (one whole kernel per run)");
  return tidepool::perf::benchmark_main(argc, argv, {"--threads=", &g_max_threads, 2, "up to %zu threads"}, reporter,
                                        {.register_benchmarks = register_benchmarks, .quick_min_time = "0.05"});
}
