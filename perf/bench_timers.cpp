// Timer accuracy and idle cost of tidepool's timers (issue 11). A plain program, not part of
// tools/compare: it prints its figures and exits 0 (1 if a task ran before its time).
//
//   accuracy: 10,000 delayed tasks (submit_at) on an otherwise idle pool, due every `spacing`
//             (200 µs by default) from 100 ms after the start, so that each is alone when it is
//             due; lateness = when the task starts on a worker − its due time. Prints p50, p99
//             and the maximum (targets: p50 <= 100 µs, p99 <= 1 ms).
//   idle:     10,000 delayed tasks due 10 s from now, then the process's CPU time (getrusage:
//             user + system, every thread) over 2 s while only they are pending. Then stop()
//             cancels them.
//
// usage: bench_timers [--quick] [--timers=N] [--spacing_us=N]     (--quick: 2,000 timers, 0.5 s idle)

#include <sys/resource.h>  // for getrusage, RUSAGE_SELF

#include <algorithm>  // for std::sort, std::max
#include <chrono>     // for std::chrono
#include <cstdio>     // for std::printf
#include <cstdlib>    // for std::atoll
#include <cstring>    // for std::strncmp, std::strcmp
#include <thread>     // for std::this_thread::sleep_for
#include <vector>     // for std::vector

#include "tidepool/pool.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double percentile(const std::vector<double>& sorted, double p) {
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[index];
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t timers = 10'000;
  long spacing_us = 200;
  double idle_seconds = 2.0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      timers = 2'000;
      idle_seconds = 0.5;
    } else if (std::strncmp(argv[i], "--timers=", 9) == 0) {
      timers = static_cast<std::size_t>(std::atoll(argv[i] + 9));
    } else if (std::strncmp(argv[i], "--spacing_us=", 13) == 0) {
      spacing_us = std::atoll(argv[i] + 13);
    } else {
      std::printf("usage: bench_timers [--quick] [--timers=N] [--spacing_us=N]\n");
      return 2;
    }
  }

  tidepool::pool_options options;
  options.workers = 2;
  int status = 0;
  {
    tidepool::pool pool(options);
    std::vector<double> lateness_us(timers, 0.0);
    std::vector<tidepool::task<void>> handles;
    handles.reserve(timers);
    const auto first = clock_type::now() + std::chrono::milliseconds(100);
    for (std::size_t i = 0; i < timers; ++i) {
      const auto due = first + std::chrono::microseconds(spacing_us) * static_cast<long>(i);
      handles.push_back(pool.submit_at(due, [due, slot = &lateness_us[i]] {
        *slot = std::chrono::duration<double, std::micro>(clock_type::now() - due).count();
      }));
    }
    for (auto& h : handles) h.get();
    std::vector<double> sorted = lateness_us;
    std::sort(sorted.begin(), sorted.end());
    if (sorted.front() < 0) {
      std::printf("FAILED: a task started %.1f us before its time\n", -sorted.front());
      status = 1;
    }
    std::printf("accuracy: %zu timers, one every %ld us, 2 workers otherwise idle: lateness p50 %.1f us, p99 %.1f us, max %.1f us\n",
                timers, spacing_us, percentile(sorted, 0.50), percentile(sorted, 0.99), sorted.back());
  }
  {
    tidepool::pool pool(options);
    std::vector<tidepool::task<void>> handles;
    handles.reserve(timers);
    for (std::size_t i = 0; i < timers; ++i) handles.push_back(pool.submit_after(std::chrono::seconds(10), [] {}));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the workers finish searching and park
    const double cpu_before = cpu_seconds();
    const auto wall_before = clock_type::now();
    std::this_thread::sleep_for(std::chrono::duration<double>(idle_seconds));
    const double cpu = cpu_seconds() - cpu_before;
    const double wall = std::chrono::duration<double>(clock_type::now() - wall_before).count();
    const auto m = pool.metrics();
    std::printf("idle: %zu timers pending (scheduled %llu), 2 workers + the timer thread: CPU %.3f ms over %.2f s (%.4f %% of one core)\n",
                timers, static_cast<unsigned long long>(m.scheduled), cpu * 1e3, wall, 100.0 * cpu / wall);
    pool.stop();
  }
  return status;
}
