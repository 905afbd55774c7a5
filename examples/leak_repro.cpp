// Go pond's issue 110, on tidepool: 10 workers, and in an endless loop (bounded here) a 1 MiB
// payload per round read by 14 tasks. pond v2.2.0–v2.3.2 kept every finished closure of a buffer
// segment alive, so memory grew without bound. tidepool destroys a task's captures before its
// completion is visible, so live payloads stay bounded by what is queued or running.
//
//   examples/leak_repro [seconds]     prints RSS and live payloads each second (default 10 s)
//
// Exits non-zero if a payload outlives stop_and_wait(), or if live payloads ever exceed the
// tasks that were waiting or running.

#include <tidepool/tidepool.hpp>

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono
#include <cstdio>   // for std::printf, std::fopen
#include <cstdlib>  // for std::atoi
#include <memory>   // for std::make_shared
#include <vector>   // for std::vector

namespace {

std::atomic<long> live_payloads{0};

struct payload {
  std::vector<char> bytes = std::vector<char>(1 << 20, 'x');
  payload() { live_payloads.fetch_add(1); }
  ~payload() { live_payloads.fetch_sub(1); }
};

long rss_kib() {
  long kib = -1;
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    }
    std::fclose(f);
  }
  return kib;
}

}  // namespace

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 10;
  tidepool::pool_options options;
  options.workers = 10;
  tidepool::pool pool(options);
  std::atomic<long> reads{0};
  long rounds = 0;
  long peak_live = 0;
  bool bounded = true;
  const auto start = std::chrono::steady_clock::now();
  auto next_report = start;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(seconds)) {
    auto data = std::make_shared<payload>();
    for (int t = 0; t < 14; ++t) pool.go([data, &reads] { reads.fetch_add(data->bytes[0] == 'x'); });
    data.reset();
    ++rounds;
    const tidepool::pool_metrics m = pool.metrics();
    const long live = live_payloads.load();
    if (live > peak_live) peak_live = live;
    if (live > static_cast<long>(m.waiting + m.running)) bounded = false;
    if (std::chrono::steady_clock::now() >= next_report) {
      std::printf("t=%3.0fs rounds %8ld  live payloads %5ld  waiting %6llu  RSS %7ld KiB\n",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), rounds, live,
                  static_cast<unsigned long long>(m.waiting), rss_kib());
      std::fflush(stdout);
      next_report += std::chrono::seconds(1);
    }
  }
  pool.stop_and_wait();
  const long left = live_payloads.load();
  std::printf("%ld rounds, %ld reads, peak live payloads %ld, after stop_and_wait %ld, RSS %ld KiB\n", rounds,
              reads.load(), peak_live, left, rss_kib());
  if (!bounded) std::printf("FAIL: a finished task kept its payload alive\n");
  if (left != 0) std::printf("FAIL: payloads outlived stop_and_wait\n");
  return bounded && left == 0 && reads.load() == rounds * 14 ? 0 : 1;
}
