// Server-style workloads: tasks submitted from threads outside the pool, as a server's I/O
// threads do. tidepool against oneTBB's task_arena::enqueue, boost::asio::thread_pool + post, and
// a plain mutex + condition_variable pool, in one binary and one run. Pools have 2 workers.
//
//   submit   P producer threads submit N empty fire-and-forget tasks; the clock stops when the
//            last one has run (Mtasks/s). Checks that exactly N tasks ran.
//   latency  one producer submits tasks of 50 µs of work at Poisson-distributed times, at half
//            the workers' capacity (2 workers / 50 µs = 40,000 tasks/s, offered 20,000/s); each
//            task records the time from just before its submission to its start (p50/p99/p99.9).
//            Every scheduler gets the same arrival times. Also reported: `cpus`, the CPU time the
//            process used per second of the run (the tasks' work is 1.0 of it).
//   latency_light  the same at 12.5 % load (a task every 200 µs on average; 20,000 samples): what
//            a lightly loaded server sees, and what an idle worker's searching costs (`cpus`,
//            of which the tasks' work is 0.25).
//   latency_hog  the same, while another process busy-loops pinned to one CPU (started by the
//            benchmark with fork + sched_setaffinity, killed at the end): a server sharing its
//            machine. Every scheduler still has 2 workers, and they are not pinned.
//   starvation  2 workers, each running a chain of tasks: a task runs a parallel_for over 3–6 ms of
//            work (the same pseudo-random durations for every scheduler), then go()es the next
//            task of its chain. Meanwhile this thread submits a 1 µs probe task every 1 ms for
//            10 s: probes started before the end (%), worst and p99 wait from submission to start
//            (a probe not started by the end counts as waiting until the end). Pools without
//            fork-join (asio, mutex) run the same work as a serial loop. Bounded in time: the
//            chains stop at the end, and a scheduler that then does not finish within 30 s fails.
//   priority_latency  tidepool only (no peer has priorities): the latency workload's 50 µs tasks,
//            submitted as `high` at 40 % of 2 workers' capacity, first alone and then with as many
//            `low` tasks on top (80 % load). Submit→start p50/p99/p99.9 of the high tasks in both
//            phases, and the ratio of their p99s (the target: at most 2).
//   idle     a burst of 200,000 empty tasks, then the CPU time all the pool's threads use while
//            the process sleeps for 2 s (per second of idleness); then one more task must run.
//
// tidepool is also run with its latency histograms off (`tidepool[untimed]`) and timing every
// task (`tidepool[every_task_timed]`) — the default times 1 task in 64 — to show what they cost.
// Built with TIDEPOOL_PERF_QUEUE defined (bench_server_<queue>), the program runs only tidepool,
// with its global queue swapped (lib/global_queue.hpp), as `tidepool[<queue>]`.
//
//   perf/bench_server [--quick] [google-benchmark flags]
//   --quick: 500,000 tasks and 2 workers only for submit, 10,000 latency samples (2,000 light), 2 s of
//   probes, 1 s idle.

#include <benchmark/benchmark.h>
#include <sched.h>      // for sched_getaffinity, sched_setaffinity, cpu_set_t
#include <signal.h>     // for kill, SIGKILL
#include <sys/prctl.h>  // for prctl, PR_SET_TIMERSLACK, PR_SET_PDEATHSIG
#include <sys/wait.h>   // for waitpid
#include <unistd.h>     // for fork, pipe, read, write, close, getpid, getppid, _exit

#include <algorithm>  // for std::sort
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cmath>      // for std::ceil
#include <cstdint>    // for std::uint64_t, std::int64_t
#include <cstdio>     // for std::snprintf
#include <cstring>    // for std::strcmp
#include <ctime>      // for clock_gettime
#include <random>     // for std::mt19937_64, std::exponential_distribution
#include <optional>   // for std::optional
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

std::uint64_t cpu_ns(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000 + static_cast<std::uint64_t>(t.tv_nsec);
}

constexpr std::size_t latency_workers = 2;
constexpr auto task_work = 50us;

// The latency workloads: the load offered (a fraction of the workers' capacity), the number of
// samples, and whether a CPU hog runs beside the pool.
enum class latency_workload { half_load, half_load_with_hog, light_load };
struct latency_setup {
  const char* label;  // the workload's name and configuration, as tools/compare reads them
  double offered_load;
  std::size_t samples;
};
latency_setup setup_of(latency_workload w) {
  const std::size_t samples = g_quick ? 10'000 : 100'000;
  switch (w) {
    case latency_workload::half_load: return {"latency/2W50%", 0.5, samples};
    case latency_workload::half_load_with_hog: return {"latency_hog/2W50%", 0.5, samples};
    // A task every 200 µs on average: a fifth of the samples take as long as the half-load runs.
    case latency_workload::light_load: return {"latency_light/2W12.5%", 0.125, samples / 5};
  }
  return {"?", 0.5, samples};
}

// The same arrival times for every scheduler: offsets from the start, exponential gaps.
std::vector<clock_type::duration> arrivals(latency_workload w) {
  const double mean_gap_ns =
      std::chrono::duration<double, std::nano>(task_work).count() / (latency_workers * setup_of(w).offered_load);
  std::mt19937_64 rng(20261127);
  std::exponential_distribution<double> gap(1.0 / mean_gap_ns);
  std::vector<clock_type::duration> offsets(setup_of(w).samples);
  double at = 0;
  for (auto& offset : offsets) {
    at += gap(rng);
    offset = std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double, std::nano>(at));
  }
  return offsets;
}

double percentile_us(std::vector<std::uint64_t> ns, double q) {
  std::sort(ns.begin(), ns.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(ns.size())));
  return static_cast<double>(ns[std::max<std::size_t>(rank, 1) - 1]) / 1e3;
}

// Another process, busy-looping on one CPU (the first this process may run on) for as long as
// this object lives.
class cpu_hog {
 public:
  cpu_hog() {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    while (cpu_ < CPU_SETSIZE && !CPU_ISSET(cpu_, &allowed)) ++cpu_;
    int ready[2];
    if (cpu_ == CPU_SETSIZE || pipe(ready) != 0) return;
    const pid_t benchmark = getpid();
    pid_ = fork();
    if (pid_ == 0) spin_pinned(cpu_, ready[1], benchmark);  // never returns
    close(ready[1]);
    char pinned = 0;
    if (pid_ > 0 && read(ready[0], &pinned, 1) == 1) running_ = pinned == 1;
    close(ready[0]);
  }
  ~cpu_hog() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  cpu_hog(const cpu_hog&) = delete;
  cpu_hog& operator=(const cpu_hog&) = delete;

  [[nodiscard]] bool running() const noexcept { return running_; }
  [[nodiscard]] int cpu() const noexcept { return cpu_; }

 private:
  // In the child of a multi-threaded process: system calls only, then a loop.
  [[noreturn]] static void spin_pinned(int cpu, int ready, pid_t benchmark) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the benchmark, even if it crashes
    if (getppid() != benchmark) _exit(1);  // it died before prctl: nobody would kill us
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    const char pinned = sched_setaffinity(0, sizeof one, &one) == 0 ? 1 : 0;
    if (write(ready, &pinned, 1) != 1 || pinned == 0) _exit(1);
    volatile std::uint64_t spins = 0;
    for (;;) spins = spins + 1;
  }

  int cpu_ = 0;
  pid_t pid_ = -1;
  bool running_ = false;
};

// <prefix>p50_us, <prefix>p99_us and <prefix>p999_us of waits in nanoseconds.
void report_percentiles(benchmark::State& state, const std::string& prefix, const std::vector<std::uint64_t>& wait_ns) {
  state.counters[prefix + "p50_us"] = percentile_us(wait_ns, 0.50);
  state.counters[prefix + "p99_us"] = percentile_us(wait_ns, 0.99);
  state.counters[prefix + "p999_us"] = percentile_us(wait_ns, 0.999);
}

// The latency workloads' task: records its wait from `submitted` to its start, then works.
auto timed_task(std::vector<std::uint64_t>& wait_ns, std::size_t i, clock_type::time_point submitted) {
  return [&wait_ns, i, submitted] {
    const auto started = clock_type::now();
    wait_ns[i] = static_cast<std::uint64_t>(std::chrono::nanoseconds(started - submitted).count());
    while (clock_type::now() - started < task_work) {
    }
    g_done.count_one();
  };
}

template <class Pool>
void BM_Latency(benchmark::State& state, latency_workload workload) {
  // Sleep until each arrival with the kernel's tightest timer slack, so the producer wakes on
  // time without spinning on a core the workers need.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  const std::vector<clock_type::duration> offsets = arrivals(workload);
  const std::size_t n = offsets.size();
  std::vector<std::uint64_t> wait_ns(n, UINT64_MAX);
  state.SetLabel(setup_of(workload).label);
  double cpus = 0;
  for (auto _ : state) {
    g_done.reset();
    std::fill(wait_ns.begin(), wait_ns.end(), UINT64_MAX);
    std::optional<cpu_hog> hog;
    if (workload == latency_workload::half_load_with_hog && !hog.emplace().running()) {
      state.SkipWithError("unsupported: could not start a process pinned to one CPU");
      return;
    }
    Pool pool(latency_workers);
    const auto start = clock_type::now() + 1ms;
    const std::uint64_t cpu_before = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (std::size_t i = 0; i < n; ++i) {
      std::this_thread::sleep_until(start + offsets[i]);
      const auto submitted = clock_type::now();
      pool.post(timed_task(wait_ns, i, submitted));
    }
    g_done.wait_for(n);
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    // The pool's threads and the producer (the hog is another process): what the pool burns
    // searching for work shows here, beside the tasks' own 50 µs each.
    cpus = static_cast<double>(cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_before) / 1e9 / seconds;
    state.SetIterationTime(seconds);
    if (g_done.total() != n || std::find(wait_ns.begin(), wait_ns.end(), UINT64_MAX) != wait_ns.end()) {
      state.SkipWithError("wrong answer: a task did not run exactly once");
      return;
    }
  }
  report_percentiles(state, "", wait_ns);
  state.counters["max_us"] = percentile_us(wait_ns, 1.0);
  state.counters["cpus"] = cpus;
}

// ---- priority_latency ---------------------------------------------------------------------------
#ifndef TIDEPOOL_PERF_QUEUE  // tidepool itself only

constexpr double high_load = 0.4;  // and as much again of low in the mixed phase

struct arrival {
  clock_type::duration offset;
  bool high;
};

// Two Poisson streams of equal rate, high and low, merged in time order; the same for every run.
const std::vector<arrival>& prioritised_arrivals() {
  static const std::vector<arrival> merged = [] {
    const double mean_gap_ns = std::chrono::duration<double, std::nano>(task_work).count() / (latency_workers * high_load);
    std::mt19937_64 rng(20261129);
    std::exponential_distribution<double> gap(1.0 / mean_gap_ns);
    std::vector<arrival> v;
    for (bool high : {true, false}) {
      double at = 0;
      for (std::size_t i = 0; i < setup_of(latency_workload::half_load).samples; ++i) {
        at += gap(rng);
        v.push_back({std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double, std::nano>(at)), high});
      }
    }
    std::sort(v.begin(), v.end(), [](const arrival& a, const arrival& b) { return a.offset < b.offset; });
    return v;
  }();
  return merged;
}

// One phase: submits the arrivals (high only, or both), returns the high tasks' waits.
std::vector<std::uint64_t> run_prioritised_phase(bool with_low) {
  std::vector<arrival> phase;
  for (const arrival& a : prioritised_arrivals()) {
    if (a.high || with_low) phase.push_back(a);
  }
  std::vector<std::uint64_t> wait_ns(phase.size(), UINT64_MAX);
  g_done.reset();
  tidepool::pool_options options;
  options.workers = latency_workers;
  tidepool::pool pool(options);
  tidepool::submit_options high;
  high.priority = tidepool::priority::high;
  tidepool::submit_options low;
  low.priority = tidepool::priority::low;
  const auto start = clock_type::now() + 1ms;
  for (std::size_t i = 0; i < phase.size(); ++i) {
    std::this_thread::sleep_until(start + phase[i].offset);
    const auto submitted = clock_type::now();
    pool.go(timed_task(wait_ns, i, submitted), phase[i].high ? high : low);
  }
  g_done.wait_for(phase.size());
  std::vector<std::uint64_t> high_waits;
  for (std::size_t i = 0; i < phase.size(); ++i) {
    if (phase[i].high) high_waits.push_back(wait_ns[i]);
  }
  if (g_done.total() != phase.size() || std::find(wait_ns.begin(), wait_ns.end(), UINT64_MAX) != wait_ns.end()) {
    return {};
  }
  return high_waits;
}

void BM_PriorityLatency(benchmark::State& state) {
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  state.SetLabel("priority_latency/2W40%+40%");
  std::vector<std::uint64_t> alone;
  std::vector<std::uint64_t> mixed;
  for (auto _ : state) {
    const auto start = clock_type::now();
    alone = run_prioritised_phase(/*with_low=*/false);
    mixed = run_prioritised_phase(/*with_low=*/true);
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    if (alone.empty() || mixed.empty()) {
      state.SkipWithError("wrong answer: a task did not run exactly once");
      return;
    }
  }
  report_percentiles(state, "high_alone_", alone);
  report_percentiles(state, "high_mixed_", mixed);
  state.counters["p99_mixed_to_alone"] = percentile_us(mixed, 0.99) / percentile_us(alone, 0.99);
}
#endif

// ---- starvation ---------------------------------------------------------------------------------

constexpr std::size_t starvation_workers = 2;
constexpr std::size_t chains = starvation_workers;  // one chain per worker
constexpr auto slice_work = 25us;                   // one index of a chain task's parallel_for
constexpr auto probe_period = 1ms;
constexpr auto probe_work = 1us;
constexpr auto starvation_grace = 30s;  // after the run, for the chains to stop and the probes to run

clock_type::duration starvation_run_time() { return g_quick ? 2s : 10s; }

void spin_for(clock_type::duration d) {
  const auto start = clock_type::now();
  while (clock_type::now() - start < d) {
  }
}

// How many slices task `step` of chain `chain` runs: 120–240 slices of 25 µs, 3–6 ms of work,
// from a splitmix64 hash, so every scheduler gets the same durations.
std::size_t chain_task_slices(std::uint64_t chain, std::uint64_t step) {
  std::uint64_t z = (chain << 40 | step) + 0x9e3779b97f4a7c15;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  z ^= z >> 31;
  constexpr auto fewest = static_cast<std::size_t>(3ms / slice_work);
  return fewest + static_cast<std::size_t>(z % (fewest + 1));
}

// What the chains and probes share. On the heap and never freed if a scheduler fails to finish,
// so that tasks it runs late still find it.
template <class Pool>
struct starvation_state {
  Pool pool{starvation_workers};
  clock_type::time_point start;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> chains_running{chains};
  std::atomic<std::uint64_t> chain_tasks{0};
  std::atomic<bool> wrong_sum{false};
  std::vector<std::int64_t> submitted_ns;           // written by the probing thread only
  std::vector<std::atomic<std::int64_t>> started_ns;  // -1 until the probe starts

  explicit starvation_state(std::size_t probes) : submitted_ns(probes), started_ns(probes) {
    for (auto& s : started_ns) s.store(-1, std::memory_order_relaxed);
  }

  std::int64_t now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - start).count();
  }

  void chain_task(std::uint64_t chain, std::uint64_t step) {
    const std::size_t slices = chain_task_slices(chain, step);
    std::atomic<std::uint64_t> covered{0};
    pool.parallel_for(slices, [&covered](std::size_t i) {
      spin_for(slice_work);
      covered.fetch_add(i + 1, std::memory_order_relaxed);
    });
    if (covered.load() != slices * (slices + 1) / 2) wrong_sum.store(true);
    chain_tasks.fetch_add(1, std::memory_order_relaxed);
    if (stopping.load(std::memory_order_acquire)) {
      chains_running.fetch_sub(1, std::memory_order_release);
      return;
    }
    pool.post([this, chain, step] { chain_task(chain, step + 1); });
  }

  void probe(std::size_t i) {
    started_ns[i].store(now_ns(), std::memory_order_relaxed);
    spin_for(probe_work);
    g_done.count_one();
  }
};

template <class Pool>
void BM_Starvation(benchmark::State& state) {
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  // probes on time, without spinning
  state.SetLabel("starvation/2W");
  const auto run_time = starvation_run_time();
  const std::size_t probes = static_cast<std::size_t>(run_time / probe_period);
  std::vector<double> waits_ms(probes);
  for (auto _ : state) {
    g_done.reset();
    auto* s = new starvation_state<Pool>(probes);
    s->start = clock_type::now();
    for (std::uint64_t c = 0; c < chains; ++c) s->pool.post([s, c] { s->chain_task(c, 0); });
    for (std::size_t i = 0; i < probes; ++i) {
      std::this_thread::sleep_until(s->start + static_cast<std::int64_t>(i + 1) * probe_period);
      s->submitted_ns[i] = s->now_ns();
      s->pool.post([s, i] { s->probe(i); });
    }
    const std::int64_t end_ns = std::max(s->now_ns(), static_cast<std::int64_t>(std::chrono::nanoseconds(run_time).count()));
    s->stopping.store(true, std::memory_order_release);
    const auto give_up = clock_type::now() + starvation_grace;
    while ((s->chains_running.load(std::memory_order_acquire) > 0 || g_done.total() < probes) &&
           clock_type::now() < give_up) {
      std::this_thread::sleep_for(1ms);
    }
    const std::uint64_t chain_tasks = s->chain_tasks.load();
    if (s->chains_running.load(std::memory_order_acquire) > 0 || g_done.total() < probes) {
      char message[160];
      std::snprintf(message, sizeof message,
                    "wrong answer: %zu of %zu probes and %zu of %zu chains still unfinished 30 s after the run",
                    probes - static_cast<std::size_t>(g_done.total()), probes,
                    s->chains_running.load(), chains);
      state.SkipWithError(message);
      return;  // s and its pool are leaked on purpose: their threads may still run
    }
    std::size_t started = 0;
    for (std::size_t i = 0; i < probes; ++i) {
      const std::int64_t at = s->started_ns[i].load(std::memory_order_relaxed);
      started += at <= end_ns ? 1 : 0;
      waits_ms[i] = static_cast<double>(std::min(at, end_ns) - s->submitted_ns[i]) / 1e6;
    }
    const bool wrong_sum = s->wrong_sum.load();
    delete s;
    if (wrong_sum || g_done.total() != probes) {
      state.SkipWithError(wrong_sum ? "wrong answer: a parallel_for missed or repeated an index"
                                    : "wrong answer: a probe ran more than once");
      return;
    }
    state.SetIterationTime(static_cast<double>(end_ns) / 1e9);
    std::sort(waits_ms.begin(), waits_ms.end());
    state.counters["probes_started_pct"] = 100.0 * static_cast<double>(started) / static_cast<double>(probes);
    state.counters["worst_probe_wait_ms"] = waits_ms.back();
    state.counters["p99_probe_wait_ms"] =
        waits_ms[static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(probes))) - 1];
    state.counters["p50_probe_wait_ms"] = waits_ms[(probes + 1) / 2 - 1];
    state.counters["chain_tasks"] = static_cast<double>(chain_tasks);
    state.counters["fork_join"] = Pool::fork_join ? 1 : 0;  // 0: each chain task is a serial loop
  }
}

// ---- idle ---------------------------------------------------------------------------------------

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

// A benchmark that runs once per repetition and reports its own time.
template <class Run, class... Args>
void register_timed_runs(const std::string& name, int repetitions, Run run, Args... args) {
  benchmark::RegisterBenchmark(name.c_str(), run, args...)
      ->Iterations(1)
      ->Repetitions(repetitions)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->DisplayAggregatesOnly(true);
}

enum class workloads { submit_only, submit_latency_idle, all };

template <class Pool>
void register_scheduler(const std::string& name, workloads which = workloads::all) {
  auto* submit = benchmark::RegisterBenchmark(("submit/" + name).c_str(), BM_ExternalSubmission<Pool>);
  submit->ArgNames({"W", "P"});
  for (int w : g_quick ? std::vector<int>{2} : std::vector<int>{1, 2}) {
    for (int p : {1, 2}) submit->Args({w, p});
  }
  submit->UseManualTime()->Unit(benchmark::kMillisecond)->DisplayAggregatesOnly(true);
  if (which == workloads::submit_only) return;
  register_timed_runs("latency/" + name, 3, BM_Latency<Pool>, latency_workload::half_load);
  if (which == workloads::all) {
    register_timed_runs("latency_hog/" + name, 3, BM_Latency<Pool>, latency_workload::half_load_with_hog);
    register_timed_runs("latency_light/" + name, 3, BM_Latency<Pool>, latency_workload::light_load);
    register_timed_runs("starvation/" + name, g_quick ? 1 : 3, BM_Starvation<Pool>);
  }
  register_timed_runs("idle/" + name, g_quick ? 1 : 3, BM_Idle<Pool>);
}

void register_all() {
  using namespace tidepool::perf;
#ifdef TIDEPOOL_PERF_QUEUE
  // The queue variants differ from tidepool only in how external submissions are queued; the
  // starvation and CPU-hog workloads add nothing about that, so they are run once, on tidepool.
  register_scheduler<tidepool_pool>("tidepool[" TIDEPOOL_PERF_QUEUE "]", workloads::submit_latency_idle);
#else
  register_scheduler<tidepool_pool>("tidepool");
  register_timed_runs("priority_latency/tidepool", g_quick ? 1 : 3, BM_PriorityLatency);
  register_scheduler<tidepool_pool_sampling<0>>("tidepool[untimed]", workloads::submit_only);
  register_scheduler<tidepool_pool_sampling<1>>("tidepool[every_task_timed]", workloads::submit_only);
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
