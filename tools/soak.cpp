// Soak: a mixed workload on tidepool for a given time, sampled every second, with a drift
// verdict at the end. Built and run by tools/soak; tools/test runs it for 10 seconds.
//
// The workload, each part on a thread of its own, all at once:
//   * external producers: go() batches and submit() batches (1 task in 50 throws);
//   * task groups of 200 tasks, every 5th group with a failure that cancels the rest;
//   * a subpool (limit 1) with a nested subpool, and a short-lived subpool made and destroyed
//     every round;
//   * fork-join from outside: parallel_for, parallel_reduce, parallel_invoke, checked;
//   * a bounded, non-blocking pool fed with try_submit, so refusals happen all the time;
//   * resize of the main pool up and down (1 to 4 workers) every half second.
// Every second: RSS and thread count (/proc/self/status), the heap in use (mallinfo2: what RSS
// would be without thread stacks, allocator caches and fragmentation), the main pool's waiting
// tasks (a backlog would grow RSS for the workload's sake, not the pool's), the accounting
// identity of both pools (submitted == waiting + running + succeeded + failed + cancelled) and
// the task rates.
// Verdict: the identity held at every sample; the thread count never exceeded what the workload
// can have; after the warm-up, RSS does not grow (least-squares slope below a threshold; runs
// shorter than a minute are too short to judge RSS and only report it); every checked result
// was right, and at the end every accepted task is accounted for. Exit status 0 only if all hold.
//
// usage: soak [MINUTES]   (default 1; fractions allowed: 0.2 is 12 seconds)

#include <algorithm>  // for std::min, std::max
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cstdint>    // for std::uint64_t
#include <cstdio>     // for std::printf, std::fprintf, std::fopen
#include <cstdlib>    // for std::strtod
#include <cstring>    // for std::strncmp
#include <functional> // for std::ref
#include <iterator>   // for std::size
#include <malloc.h>   // for mallinfo2
#include <stdexcept>  // for std::runtime_error
#include <string>     // for std::string
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "tidepool/tidepool.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

std::atomic<bool> stopping{false};
std::atomic<std::uint64_t> wrong_results{0};
// Submissions to the main pool that returned normally: at the end, exactly its `submitted`.
std::atomic<std::uint64_t> main_accepted{0};
std::atomic<std::uint64_t> bounded_accepted{0};
std::atomic<std::uint64_t> bounded_refused{0};

void wrong(const char* what) {
  if (wrong_results.fetch_add(1) < 10) std::fprintf(stderr, "soak: wrong result: %s\n", what);
}

struct planned_failure : std::runtime_error {
  planned_failure() : std::runtime_error("planned failure") {}
};

// A little work, so tasks are not all empty.
std::uint64_t spin(std::uint64_t seed, int rounds) {
  for (int i = 0; i < rounds; ++i) seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  return seed;
}

void wait_for_count(const std::atomic<std::uint64_t>& count, std::uint64_t target) {
  while (count.load(std::memory_order_acquire) < target) std::this_thread::sleep_for(50us);
}

void go_producer(tidepool::pool& p) {
  std::atomic<std::uint64_t> done{0};
  std::uint64_t sent = 0;
  while (!stopping.load()) {
    for (int i = 0; i < 2000; ++i) {
      p.go([&done, i] {
        static_cast<void>(spin(static_cast<std::uint64_t>(i), 20));
        done.fetch_add(1, std::memory_order_release);
      });
      ++sent;
      main_accepted.fetch_add(1, std::memory_order_relaxed);
    }
    wait_for_count(done, sent);  // bounded backlog: RSS measures retention, not a growing queue
  }
}

void submit_producer(tidepool::pool& p) {
  std::vector<tidepool::task<std::uint64_t>> handles;
  while (!stopping.load()) {
    handles.clear();
    for (std::uint64_t i = 0; i < 1000; ++i) {
      handles.push_back(p.submit([i, payload = std::vector<char>(64 + i % 512)] {
        if (i % 50 == 49) throw planned_failure();
        return i + payload.size();
      }));
      main_accepted.fetch_add(1, std::memory_order_relaxed);
    }
    for (std::uint64_t i = 0; i < handles.size(); ++i) {
      try {
        if (handles[i].get() != i + 64 + i % 512) wrong("submit: value");
        if (i % 50 == 49) wrong("submit: a throwing task returned");
      } catch (const planned_failure&) {
        if (i % 50 != 49) wrong("submit: a task threw that should not");
      }
    }
  }
}

void groups(tidepool::pool& p) {
  for (std::uint64_t round = 0; !stopping.load(); ++round) {
    const bool fails = round % 5 == 0;
    std::atomic<int> ran{0};
    tidepool::task_group g{p};
    for (int i = 0; i < 200; ++i) {
      g.go([&ran, fails, i](std::stop_token stop) {
        if (stop.stop_requested()) return;
        ran.fetch_add(1);
        if (fails && i == 20) throw planned_failure();
        static_cast<void>(spin(static_cast<std::uint64_t>(i), 50));
      });
      main_accepted.fetch_add(1, std::memory_order_relaxed);
    }
    try {
      g.wait();
      if (fails) wrong("group: the failure was not rethrown");
      if (ran.load() != 200) wrong("group: not every task ran");
    } catch (const planned_failure&) {
      if (!fails) wrong("group: a failure without a failing task");
    }
  }
}

void subpools(tidepool::pool& p) {
  tidepool::subpool limited{p, 1};
  tidepool::subpool nested{limited, 1};
  std::vector<tidepool::task<int>> handles;
  std::atomic<std::uint64_t> nested_done{0};
  std::uint64_t nested_sent = 0;
  while (!stopping.load()) {
    handles.clear();
    tidepool::subpool short_lived{p, 0};
    for (int i = 0; i < 300; ++i) {
      handles.push_back(limited.submit([i] { return i; }));
      nested.go([i, &nested_done] {
        static_cast<void>(spin(static_cast<std::uint64_t>(i), 10));
        nested_done.fetch_add(1, std::memory_order_release);
      });
      ++nested_sent;
      short_lived.go([i] { static_cast<void>(spin(static_cast<std::uint64_t>(i), 10)); });
      main_accepted.fetch_add(3, std::memory_order_relaxed);
    }
    for (int i = 0; i < 300; ++i) {
      if (handles[static_cast<std::size_t>(i)].get() != i) wrong("subpool: value");
    }
    short_lived.stop_and_wait();
    // The nested subpool's tasks too: a backlog that grows whenever the machine is busy would
    // show up as RSS drift that is the workload's, not the pool's.
    wait_for_count(nested_done, nested_sent);
    const tidepool::pool_metrics m = limited.metrics();
    if (m.submitted != m.waiting + m.running + m.succeeded + m.failed + m.cancelled) wrong("subpool: identity");
  }
}

void fork_join(tidepool::pool& p) {
  std::vector<std::uint32_t> data(100'000);
  while (!stopping.load()) {
    tidepool::parallel_for(p, std::size_t{0}, data.size(), [&](std::size_t i) { data[i] = static_cast<std::uint32_t>(i % 7); });
    main_accepted.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t sum = tidepool::parallel_reduce(
        p, std::size_t{0}, data.size(), std::uint64_t{0}, [&](std::size_t i) { return std::uint64_t{data[i]}; },
        [](std::uint64_t a, std::uint64_t b) { return a + b; });
    main_accepted.fetch_add(1, std::memory_order_relaxed);
    std::uint64_t expected = 0;
    for (std::size_t i = 0; i < data.size(); ++i) expected += i % 7;
    if (sum != expected) wrong("parallel_reduce: sum");
    int a = 0;
    int b = 0;
    tidepool::parallel_invoke(p, [&] { a = 1; }, [&] { b = 2; });
    main_accepted.fetch_add(1, std::memory_order_relaxed);
    if (a + b != 3) wrong("parallel_invoke: a half did not run");
  }
}

void bounded_producer(tidepool::pool& bounded) {
  while (!stopping.load()) {
    for (int i = 0; i < 5000; ++i) {
      if (bounded.try_submit([i] { return spin(static_cast<std::uint64_t>(i), 30); })) {
        bounded_accepted.fetch_add(1, std::memory_order_relaxed);
      } else {
        bounded_refused.fetch_add(1, std::memory_order_relaxed);
      }
    }
    std::this_thread::sleep_for(1ms);
  }
}

void resizer(tidepool::pool& p) {
  const std::size_t sizes[] = {1, 3, 4, 2, 1, 2};
  for (std::size_t i = 0; !stopping.load(); ++i) {
    p.resize(sizes[i % std::size(sizes)]);
    std::this_thread::sleep_for(500ms);
  }
  p.resize(2);
}

constexpr std::size_t workload_threads = 7;  // the functions above
constexpr std::size_t most_main_workers = 4;
constexpr std::size_t bounded_workers = 2;

// VmRSS (KiB) and Threads from /proc/self/status.
struct process_sample {
  long rss_kib = 0;
  long heap_kib = 0;  // bytes malloc has handed out and not taken back: RSS minus stacks, caches, fragmentation
  long threads = 0;
};

process_sample read_process() {
  process_sample s;
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (std::strncmp(line, "VmRSS:", 6) == 0) s.rss_kib = std::strtol(line + 6, nullptr, 10);
      if (std::strncmp(line, "Threads:", 8) == 0) s.threads = std::strtol(line + 8, nullptr, 10);
    }
    std::fclose(f);
  }
  s.heap_kib = static_cast<long>(mallinfo2().uordblks / 1024);
  return s;
}

bool identity_holds(const tidepool::pool_metrics& m) {
  return m.submitted == m.waiting + m.running + m.succeeded + m.failed + m.cancelled;
}

// Least-squares slope of y over x.
double slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sx += x[i];
    sy += y[i];
    sxx += x[i] * x[i];
    sxy += x[i] * y[i];
  }
  const double d = n * sxx - sx * sx;
  return d == 0 ? 0 : (n * sxy - sx * sy) / d;
}

}  // namespace

int main(int argc, char** argv) {
  const double minutes = argc > 1 ? std::strtod(argv[1], nullptr) : 1.0;
  if (!(minutes > 0)) {
    std::fprintf(stderr, "usage: soak [MINUTES]\n");
    return 2;
  }
  const auto duration = std::chrono::duration<double>(minutes * 60);
  // Warm-up: caches, arenas and queue segments reach their working size first.
  const double warmup_seconds = std::min(60.0, minutes * 60 / 5);
  // RSS growth allowed after the warm-up. A leak of one 128-byte node per task would be
  // ~100 MiB per minute at these rates; allocator noise is well under this.
  const double rss_slope_limit_kib_per_min = 1024;

  tidepool::pool_options main_options;
  main_options.workers = 2;
  main_options.name = "soak";
  tidepool::pool main_pool(main_options);
  tidepool::pool_options bounded_options;
  bounded_options.workers = bounded_workers;
  bounded_options.queue_capacity = 64;
  bounded_options.non_blocking = true;
  bounded_options.name = "soak-bounded";
  tidepool::pool bounded(bounded_options);

  const process_sample at_start = read_process();
  std::vector<std::thread> threads;
  threads.emplace_back(go_producer, std::ref(main_pool));
  threads.emplace_back(submit_producer, std::ref(main_pool));
  threads.emplace_back(groups, std::ref(main_pool));
  threads.emplace_back(subpools, std::ref(main_pool));
  threads.emplace_back(fork_join, std::ref(main_pool));
  threads.emplace_back(bounded_producer, std::ref(bounded));
  threads.emplace_back(resizer, std::ref(main_pool));
  // The process's threads at most: those at start (this one and both pools' workers), the
  // workload's, and the main pool's workers grown to their most.
  const long thread_limit = at_start.threads + static_cast<long>(workload_threads + most_main_workers - main_options.workers);

  std::printf("soak: %.1f min, warm-up %.0f s; second, RSS MiB, heap in use MiB, threads, main pool tasks waiting, main pool Mtasks/s, bounded Mtasks/s, refused/s\n",
              minutes, warmup_seconds);
  std::vector<double> times;
  std::vector<double> rss;
  long most_threads = 0;
  long least_threads_after_warmup = 1L << 30;
  long most_threads_after_warmup = 0;
  std::uint64_t identity_failures = 0;
  std::uint64_t last_main = 0;
  std::uint64_t last_bounded = 0;
  std::uint64_t last_refused = 0;
  const auto start = clock_type::now();
  for (int second = 1;; ++second) {
    std::this_thread::sleep_until(start + std::chrono::seconds(second));
    const process_sample s = read_process();
    const tidepool::pool_metrics m = main_pool.metrics();
    const tidepool::pool_metrics b = bounded.metrics();
    if (!identity_holds(m) || !identity_holds(b)) {
      ++identity_failures;
      std::fprintf(stderr, "soak: identity broken at second %d\n", second);
    }
    const std::uint64_t main_done = m.succeeded + m.failed + m.cancelled;
    const std::uint64_t bounded_done = b.succeeded + b.failed + b.cancelled;
    std::printf("%5d %8.1f %8.1f %4ld %8llu %8.3f %8.3f %10llu\n", second, static_cast<double>(s.rss_kib) / 1024,
                static_cast<double>(s.heap_kib) / 1024, s.threads, static_cast<unsigned long long>(m.waiting),
                static_cast<double>(main_done - last_main) / 1e6, static_cast<double>(bounded_done - last_bounded) / 1e6,
                static_cast<unsigned long long>(b.dropped - last_refused));
    std::fflush(stdout);
    last_main = main_done;
    last_bounded = bounded_done;
    last_refused = b.dropped;
    most_threads = std::max(most_threads, s.threads);
    if (second > warmup_seconds) {
      times.push_back(second / 60.0);
      rss.push_back(static_cast<double>(s.rss_kib));
      least_threads_after_warmup = std::min(least_threads_after_warmup, s.threads);
      most_threads_after_warmup = std::max(most_threads_after_warmup, s.threads);
    }
    if (clock_type::now() - start >= duration) break;
  }
  stopping.store(true);
  for (auto& t : threads) t.join();
  main_pool.stop_and_wait();
  bounded.stop_and_wait();

  const tidepool::pool_metrics m = main_pool.metrics();
  const tidepool::pool_metrics b = bounded.metrics();
  bool ok = true;
  auto verdict = [&ok](bool pass, const char* what) {
    std::printf("  %s %s\n", pass ? "ok  " : "FAIL", what);
    ok = ok && pass;
  };
  std::printf("soak: verdict\n");
  verdict(identity_failures == 0, "the accounting identity held at every sample");
  verdict(identity_holds(m) && m.waiting == 0 && m.running == 0 && m.submitted == main_accepted.load() && m.dropped == 0,
          "main pool: every accepted task counted once and finished, nothing dropped");
  verdict(identity_holds(b) && b.waiting == 0 && b.running == 0 && b.submitted == bounded_accepted.load() &&
              b.dropped == bounded_refused.load(),
          "bounded pool: accepted == submitted, refused == dropped, all finished");
  verdict(wrong_results.load() == 0, "every checked result was right");
  std::printf("  threads: %ld at start, %ld..%ld after warm-up, %ld at most (limit %ld)\n", at_start.threads,
              least_threads_after_warmup, most_threads_after_warmup, most_threads, thread_limit);
  verdict(most_threads <= thread_limit, "the thread count stayed within the workload's threads");
  const double rss_slope = slope(times, rss);
  std::printf("  RSS: %.1f MiB at start, %.1f MiB at the end, slope after warm-up %.1f KiB/min over %zu samples (limit %.0f)\n",
              static_cast<double>(at_start.rss_kib) / 1024, rss.empty() ? 0.0 : rss.back() / 1024, rss_slope, rss.size(),
              rss_slope_limit_kib_per_min);
  if (minutes >= 1) {
    verdict(rss_slope < rss_slope_limit_kib_per_min, "RSS does not drift after the warm-up");
  } else {
    std::printf("  (RSS drift not judged: runs shorter than a minute are too short)\n");
  }
  std::printf("  tasks: main pool %llu submitted (%llu failed, %llu cancelled), bounded pool %llu submitted, %llu refused\n",
              static_cast<unsigned long long>(m.submitted), static_cast<unsigned long long>(m.failed),
              static_cast<unsigned long long>(m.cancelled), static_cast<unsigned long long>(b.submitted),
              static_cast<unsigned long long>(b.dropped));
  std::printf("soak: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
