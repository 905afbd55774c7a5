// Fork-join: tidepool (parallel_invoke, and task_group) against oneTBB (tbb::task_group and
// tbb::parallel_invoke) and the serial code, in one binary and one run, with 1 and 2 threads.
//
//   fib(30)     naive recursion, one child spawned per call, the other called: 2,692,537 calls
//   skynet(6)   10-ary tree, leaves return their ordinal: 1,111,111 tasks, sum 499,999,500,000
//   for(1e8)    parallel_for over 10^8 trivial iterations (a byte store each), tidepool vs
//               tbb::parallel_for
//
// Every run checks its answer; a wrong one fails the benchmark.
//
//   perf/bench_forkjoin [--quick] [google-benchmark flags]    (--quick: fib(25), skynet(5), 10^7)

#include <benchmark/benchmark.h>
#include <oneapi/tbb/global_control.h>   // for tbb::global_control
#include <oneapi/tbb/parallel_for.h>     // for tbb::parallel_for
#include <oneapi/tbb/parallel_invoke.h>  // for tbb::parallel_invoke
#include <oneapi/tbb/task_arena.h>       // for tbb::task_arena
#include <oneapi/tbb/task_group.h>       // for tbb::task_group

#include <chrono>   // for std::chrono::steady_clock
#include <cstdint>  // for std::int64_t
#include <string>   // for std::string
#include <vector>   // for std::vector

#include "bench_main.hpp"
#include "tidepool/tidepool.hpp"

namespace {

std::size_t g_scale = 1;  // 1: full sizes; 0: --quick
int fib_n() { return g_scale != 0 ? 30 : 25; }
int skynet_depth() { return g_scale != 0 ? 6 : 5; }
std::size_t for_n() { return g_scale != 0 ? 100'000'000 : 10'000'000; }

// ---- the workloads, once per scheduler -------------------------------------------------------

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

std::int64_t skynet_size() {
  std::int64_t size = 1;
  for (int i = 0; i < skynet_depth(); ++i) size *= 10;
  return size;
}

// ---- harness ----------------------------------------------------------------------------------

// Runs `body` (which returns its answer) once per iteration, checks the answer, and reports
// runs per second (higher is better, so the summary's ratios read "tidepool is N× faster").
template <class Body, class Answer>
void measure(benchmark::State& state, const std::string& label, Body body, Answer expected) {
  double total = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    const auto answer = body();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    total += seconds;
    if (answer != expected) {
      state.SkipWithError("wrong answer");
      return;
    }
  }
  state.counters["runs/s"] = static_cast<double>(state.iterations()) / total;
  state.SetLabel(label);
}

std::string label(const char* workload, benchmark::State& state) {
  return std::string(workload) + "/" + std::to_string(state.range(0)) + "T";
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

void BM_Fib_Serial(benchmark::State& s) { measure(s, label("fib", s), [] { return fib_serial(fib_n()); }, fib_serial(fib_n())); }
void BM_Fib_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, label("fib", s), [&] { return p.submit([&] { return fib_tidepool(p, fib_n()); }).get(); }, fib_serial(fib_n()));
}
void BM_Fib_TidepoolGroup(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, label("fib", s), [&] { return p.submit([&] { return fib_tidepool_group(p, fib_n()); }).get(); },
          fib_serial(fib_n()));
}
void BM_Fib_TbbGroup(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, label("fib", s), [&] { return t.run([] { return fib_tbb_group(fib_n()); }); }, fib_serial(fib_n()));
}
void BM_Fib_TbbInvoke(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, label("fib", s), [&] { return t.run([] { return fib_tbb_invoke(fib_n()); }); }, fib_serial(fib_n()));
}

void BM_Skynet_Serial(benchmark::State& s) {
  measure(s, label("skynet", s), [] { return skynet_serial(0, skynet_size()); }, skynet_serial(0, skynet_size()));
}
void BM_Skynet_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, label("skynet", s), [&] { return p.submit([&] { return skynet_tidepool(p, 0, skynet_size()); }).get(); },
          skynet_serial(0, skynet_size()));
}
void BM_Skynet_TidepoolGroup(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  measure(s, label("skynet", s),
          [&] { return p.submit([&] { return skynet_tidepool_group(p, 0, skynet_size()); }).get(); },
          skynet_serial(0, skynet_size()));
}
void BM_Skynet_TbbGroup(benchmark::State& s) {
  tbb_threads t(s.range(0));
  measure(s, label("skynet", s), [&] { return t.run([] { return skynet_tbb_group(0, skynet_size()); }); },
          skynet_serial(0, skynet_size()));
}

// A byte store per index; the check reads the bytes back.
std::vector<unsigned char>& for_buffer() {
  static std::vector<unsigned char> buffer;
  buffer.assign(for_n(), 0);
  return buffer;
}
std::size_t checksum(const std::vector<unsigned char>& b) {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < b.size(); i += 4099) sum += b[i];
  return sum;
}
std::size_t expected_checksum() {
  std::size_t sum = 0;
  for (std::size_t i = 0; i < for_n(); i += 4099) sum += static_cast<unsigned char>(i * 7 + 1);
  return sum;
}

void BM_For_Serial(benchmark::State& s) {
  auto& b = for_buffer();
  measure(s, label("for", s), [&] {
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<unsigned char>(i * 7 + 1);
    return checksum(b);
  }, expected_checksum());
}
void BM_For_Tidepool(benchmark::State& s) {
  tidepool::pool p(workers(s.range(0)));
  auto& b = for_buffer();
  measure(s, label("for", s), [&] {
    tidepool::parallel_for(p, std::size_t{0}, b.size(), [&](std::size_t i) { b[i] = static_cast<unsigned char>(i * 7 + 1); });
    return checksum(b);
  }, expected_checksum());
}
void BM_For_Tbb(benchmark::State& s) {
  tbb_threads t(s.range(0));
  auto& b = for_buffer();
  measure(s, label("for", s), [&] {
    t.run([&] { tbb::parallel_for(std::size_t{0}, b.size(), [&](std::size_t i) { b[i] = static_cast<unsigned char>(i * 7 + 1); }); });
    return checksum(b);
  }, expected_checksum());
}

void threads(benchmark::internal::Benchmark* b) {
  b->ArgName("T")->Arg(1)->Arg(2)->UseManualTime()->Unit(benchmark::kMillisecond)->ReportAggregatesOnly(true);
}

BENCHMARK(BM_Fib_Tidepool)->Apply(threads)->Name("fib/tidepool");
BENCHMARK(BM_Fib_TidepoolGroup)->Apply(threads)->Name("fib/tidepool_group");
BENCHMARK(BM_Fib_TbbGroup)->Apply(threads)->Name("fib/tbb_group");
BENCHMARK(BM_Fib_TbbInvoke)->Apply(threads)->Name("fib/tbb_invoke");
BENCHMARK(BM_Fib_Serial)->Apply(threads)->Name("fib/serial");
BENCHMARK(BM_Skynet_Tidepool)->Apply(threads)->Name("skynet/tidepool");
BENCHMARK(BM_Skynet_TidepoolGroup)->Apply(threads)->Name("skynet/tidepool_group");
BENCHMARK(BM_Skynet_TbbGroup)->Apply(threads)->Name("skynet/tbb_group");
BENCHMARK(BM_Skynet_Serial)->Apply(threads)->Name("skynet/serial");
BENCHMARK(BM_For_Tidepool)->Apply(threads)->Name("for/tidepool");
BENCHMARK(BM_For_Tbb)->Apply(threads)->Name("for/tbb");
BENCHMARK(BM_For_Serial)->Apply(threads)->Name("for/serial");

}  // namespace

int main(int argc, char** argv) {
  tidepool::perf::summary_reporter reporter("runs/s", "runs per second (fib and skynet: one whole tree per run)");
  return tidepool::perf::benchmark_main(argc, argv, {"--scale=", &g_scale, 0, "scale %zu (0 = quick sizes)"}, reporter);
}
