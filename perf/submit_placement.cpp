// Submission throughput against where the two threads run: before each run, the round trip of a
// cache line between CPU 0 and CPU 1 (two pinned threads bouncing one atomic), then 2M empty
// tasks submitted by one thread outside the pool to a 1-worker tidepool pool and to the mutex
// pool (perf/pool_adapters.hpp), in turn. On a virtual machine the host may place the two vCPUs
// on one die or on two, and change that while the guest runs: on the project's VM the round trip
// reads 50–80 ns most of the time and 310–370 ns part of it, and 1W1P submission figures split
// the same way. Prints each run, then the medians per placement. A plain program, not run by
// tools/compare; README "Performance" and perf/README.md quote it.
//
// usage: perf/submit_placement [ROUNDS]   (default 40; each round is one run of each pool)

#include <pthread.h>  // for pthread_setaffinity_np
#include <sched.h>    // for cpu_set_t, CPU_ZERO, CPU_SET

#include <algorithm>  // for std::sort, std::min, std::max
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cstdio>     // for std::printf
#include <cstdlib>    // for std::atoi
#include <thread>     // for std::thread
#include <vector>     // for std::vector

#include "completion_counter.hpp"
#include "pool_adapters.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::size_t tasks = 2'000'000;

tidepool::perf::completion_counter done;

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

// Nanoseconds for one line to go from CPU 0 to CPU 1 and back (median of 5 × 20,000 trips).
double round_trip_ns() {
  constexpr int trips = 20'000;
  alignas(64) std::atomic<int> ball{0};
  std::vector<double> samples;
  for (int sample = 0; sample < 5; ++sample) {
    ball.store(0);
    std::thread partner([&] {
      pin_to(1);
      for (int i = 0; i < trips; ++i) {
        while (ball.load(std::memory_order_acquire) != 2 * i + 1) {
        }
        ball.store(2 * i + 2, std::memory_order_release);
      }
    });
    double ns = 0;
    std::thread starter([&] {
      pin_to(0);
      const auto start = clock_type::now();
      for (int i = 0; i < trips; ++i) {
        ball.store(2 * i + 1, std::memory_order_release);
        while (ball.load(std::memory_order_acquire) != 2 * i + 2) {
        }
      }
      ns = std::chrono::duration<double, std::nano>(clock_type::now() - start).count() / trips;
    });
    starter.join();
    partner.join();
    samples.push_back(ns);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// M tasks/s for one producer thread submitting `tasks` empty tasks to a fresh 1-worker pool.
template <class Pool>
double submit_rate() {
  done.reset();
  Pool pool(1);
  const auto start = clock_type::now();
  std::thread producer([&] {
    for (std::size_t i = 0; i < tasks; ++i) pool.post([] { done.count_one(); });
  });
  producer.join();
  done.wait_for(tasks);
  return static_cast<double>(tasks) / std::chrono::duration<double>(clock_type::now() - start).count() / 1e6;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 40;
  if (std::thread::hardware_concurrency() < 2) {
    std::printf("unsupported: needs CPUs 0 and 1\n");
    return 0;
  }
  struct run {
    double round_trip_ns, tidepool, mutex_pool;
  };
  std::vector<run> runs;
  std::printf("round trip ns   tidepool M/s   mutex_pool M/s   (1 worker, 1 producer, 2M tasks)\n");
  for (int r = 0; r < rounds; ++r) {
    run x{};
    x.round_trip_ns = round_trip_ns();
    x.tidepool = submit_rate<tidepool::perf::tidepool_pool_sampling<0>>();
    x.mutex_pool = submit_rate<tidepool::perf::mutex_pool>();
    // The placement may change during a run: measure again and keep the larger round trip.
    x.round_trip_ns = std::max(x.round_trip_ns, round_trip_ns());
    std::printf("%13.0f   %12.2f   %14.2f\n", x.round_trip_ns, x.tidepool, x.mutex_pool);
    runs.push_back(x);
  }
  // Two placements: near (within 2× of the shortest round trip seen, and under far_ns) and far.
  // The absolute bound classifies a session that only ever saw the far placement.
  constexpr double far_ns = 200;
  double shortest = runs.front().round_trip_ns;
  for (const run& x : runs) shortest = std::min(shortest, x.round_trip_ns);
  for (const bool far : {false, true}) {
    std::vector<double> rt, tp, mp;
    for (const run& x : runs) {
      if ((x.round_trip_ns > 2 * shortest || x.round_trip_ns > far_ns) != far) continue;
      rt.push_back(x.round_trip_ns);
      tp.push_back(x.tidepool);
      mp.push_back(x.mutex_pool);
    }
    std::printf("%s: %zu runs, round trip %.0f ns, tidepool %.2f, mutex_pool %.2f M tasks/s (medians)\n",
                far ? "far " : "near", rt.size(), median(rt), median(tp), median(mp));
  }
}
