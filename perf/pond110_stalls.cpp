// Why pond110's peak of live payloads is what it is: bench_memory's pond110 scenario on tidepool
// (per round a 1 MiB payload read by 14 tasks, at most 8 rounds unfinished), sampled every
// 250 µs instead of 5 ms. Prints, per run: the peak of live payloads; the longest stall (time
// in which no task finished although a round was unfinished); how idle the machine's CPUs were
// (/proc/stat); and the pool's wake_latency histogram (wake-up call → woken worker running).
// A plain program, not run by tools/compare; README "Performance" quotes it.
//
// usage: perf/pond110_stalls [WORKERS [RUNS]]   (default 2 workers, 3 runs of 20,000 rounds)

#include <algorithm>  // for std::max
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cstdio>     // for std::printf, std::fopen, std::fscanf
#include <cstdlib>    // for std::atoi
#include <memory>     // for std::make_shared
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "pond110_payload.hpp"
#include "tidepool/metrics.hpp"
#include "tidepool/pool.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr long rounds = 20'000;
constexpr long tasks_per_round = 14;
constexpr long rounds_in_flight = 8;

std::atomic<long> live_payloads{0};


// Busy and total jiffies of all CPUs together (the first line of /proc/stat).
struct cpu_times {
  unsigned long long busy = 0;
  unsigned long long total = 0;
};
cpu_times read_cpu_times() {
  cpu_times t;
  std::FILE* f = std::fopen("/proc/stat", "r");
  if (f == nullptr) return t;
  unsigned long long v[8] = {};
  if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                  &v[7]) == 8) {
    for (unsigned long long x : v) t.total += x;
    t.busy = t.total - v[3] - v[4];  // minus idle and iowait
  }
  std::fclose(f);
  return t;
}

void run(std::size_t workers) {
  std::atomic<long> finished_tasks{0};
  std::atomic<long> rounds_created{0};
  std::atomic<bool> stop{false};
  std::atomic<unsigned long> sum{0};
  long peak_live = 0;
  double longest_stall_ms = 0;

  tidepool::pool_options options;
  options.workers = workers;
  tidepool::pool pool(options);
  const cpu_times cpu_before = read_cpu_times();
  std::thread sampler([&] {
    long last_finished = 0;
    auto last_progress = clock_type::now();
    while (!stop.load()) {
      const long finished = finished_tasks.load();
      const long created = rounds_created.load();
      const auto now = clock_type::now();
      peak_live = std::max(peak_live, live_payloads.load());
      if (finished != last_finished || finished == created * tasks_per_round) {
        last_finished = finished;
        last_progress = now;
      } else {
        longest_stall_ms = std::max(longest_stall_ms, std::chrono::duration<double, std::milli>(now - last_progress).count());
      }
      std::this_thread::sleep_for(250us);
    }
  });
  const auto start = clock_type::now();
  for (long round = 0; round < rounds; ++round) {
    while (round * tasks_per_round - finished_tasks.load() > rounds_in_flight * tasks_per_round) {
      std::this_thread::sleep_for(20us);
    }
    auto data = std::make_shared<tidepool::perf::pond110_payload>(live_payloads);
    rounds_created.fetch_add(1);
    for (long t = 0; t < tasks_per_round; ++t) {
      pool.go([data, t, &sum, &finished_tasks] {
        unsigned long s = 0;
        for (std::size_t i = static_cast<std::size_t>(t); i < data->bytes.size(); i += 4096) s += data->bytes[i];
        sum.fetch_add(s, std::memory_order_relaxed);
        finished_tasks.fetch_add(1);
      });
    }
  }
  while (finished_tasks.load() < rounds * tasks_per_round) std::this_thread::sleep_for(100us);
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  stop.store(true);
  sampler.join();
  const cpu_times cpu_after = read_cpu_times();
  const tidepool::pool_metrics m = pool.metrics();
  const tidepool::latency_histogram& wake = m.wake_latency;
  const double idle = cpu_after.total > cpu_before.total
                          ? 1.0 - static_cast<double>(cpu_after.busy - cpu_before.busy) /
                                      static_cast<double>(cpu_after.total - cpu_before.total)
                          : 0.0;
  std::printf("%zu workers: %.2f s, peak live payloads %ld, longest stall %.2f ms, CPUs idle %.0f %%, "
              "wake-ups %llu: p50 %.1f p90 %.1f p99 %.1f max %.1f us%s\n",
              workers, seconds, peak_live, longest_stall_ms, 100 * idle,
              static_cast<unsigned long long>(wake.count), wake.p50_ns() / 1e3, wake.p90_ns() / 1e3,
              wake.p99_ns() / 1e3, static_cast<double>(wake.max_ns) / 1e3,
              sum.load() == static_cast<unsigned long>(rounds * tasks_per_round * ((1 << 20) / 4096)) ? "" : "  WRONG SUM");
}

}  // namespace

int main(int argc, char** argv) {
  const int workers = argc > 1 ? std::atoi(argv[1]) : 2;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 3;
  if (workers < 1 || runs < 1) {
    std::fprintf(stderr, "usage: pond110_stalls [WORKERS [RUNS]]\n");
    return 2;
  }
  for (int r = 0; r < runs; ++r) run(static_cast<std::size_t>(workers));
}
