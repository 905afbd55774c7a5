// Memory: what a scheduler keeps alive. tidepool (its tasks as go() closures, and as spawned
// coroutines: tidepool_coro) against oneTBB's task_arena::enqueue, boost::asio::thread_pool and a
// mutex + condition_variable pool, each in a process of its own (tools/compare runs one
// benchmark per process, so freed memory of one cannot flatter another).
//
//   pond110  Go pond's issue 110: 2 workers (and 10, as in pond's report), and per round a 1 MiB
//            payload captured by 14 tasks that read it (more tasks than workers). The producer keeps at most 8 rounds
//            unfinished. Sampled every 5 ms: RSS, live payloads, and *retained* payloads — alive
//            although all 14 tasks of their round have finished, in two samples in a row (the
//            series CSV has each sample's own count). A scheduler that frees a task's captures
//            when it has run retains none for that long: only, for an instant, those whose last
//            task is returning right now (≤ workers); one that keeps finished closures retains
//            many. `retaining_model` is
//            a deliberately wrong pool that keeps each finished closure until its 1024-slot buffer
//            segment is drained, as pond v2.2.0–v2.3.2 did: it shows what the scenario detects.
//   queued   1,000,000 empty tasks queued behind 2 busy workers: RSS growth per queued task.
//
// Built with TIDEPOOL_PERF_QUEUE defined (bench_memory_<queue>), it runs only tidepool, with its
// global queue swapped (lib/global_queue.hpp), as `tidepool[<queue>]`.
//
//   perf/bench_memory [--quick] [--series_dir=DIR] [google-benchmark flags]
//   --series_dir: writes DIR/pond110_<W>W_<scheduler>.csv (seconds,rss_mib,live_payloads,
//   retained_payloads).
//   --quick: 4,000 rounds instead of 20,000 (at 2 and at 10 workers).

#include <benchmark/benchmark.h>
#include <unistd.h>  // for sysconf

#include <atomic>              // for std::atomic
#include <chrono>              // for std::chrono
#include <cstdint>             // for std::uint64_t
#include <cstdio>              // for std::FILE, std::fopen, std::fscanf
#include <cstring>             // for std::strcmp, std::strncmp
#include <deque>               // for std::deque
#include <fstream>             // for std::ofstream
#include <functional>          // for std::function
#include <memory>              // for std::make_shared, std::shared_ptr
#include <string>              // for std::string
#include <thread>              // for std::thread
#include <vector>              // for std::vector

#include "bench_main.hpp"
#include "completion_counter.hpp"
#include "pond110_payload.hpp"
#include "pool_adapters.hpp"
#include "tidepool/coro.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

bool g_quick = false;
std::string g_series_dir;
std::size_t g_rounds = 20'000;
tidepool::perf::completion_counter g_done;

double rss_mib() {
  long pages = 0;
  long resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

// ---- a pool with pond v2.2's retention, to show what the scenario detects -----------------------

// pond v2.2's buffer: a worker copies a task out and leaves the closure in its slot; a segment
// is freed only once every slot of it has been read.
class retaining_buffer {
 public:
  void push(std::function<void()>&& f) {
    if (segments_.empty() || segments_.back().size() == segment_size) {
      segments_.emplace_back();
      segments_.back().reserve(segment_size);
    }
    segments_.back().push_back(std::move(f));
  }
  [[nodiscard]] bool empty() const noexcept { return segments_.empty() || read_ == segments_.front().size(); }
  std::function<void()> take() {
    std::function<void()> task = segments_.front()[read_];  // a copy: the slot keeps the captures
    if (++read_ == segment_size) {
      segments_.pop_front();
      read_ = 0;
    }
    return task;
  }

 private:
  static constexpr std::size_t segment_size = 1024;
  std::deque<std::vector<std::function<void()>>> segments_;
  std::size_t read_ = 0;
};
using retaining_model_pool = tidepool::perf::basic_mutex_pool<retaining_buffer>;

// ---- the same tasks as spawned coroutines (issue 12) ---------------------------------------------

// Each task is a coroutine spawned on the pool, and its closure is the coroutine's parameter: it
// lives in the coroutine's frame, which must go (captures and all) as the coroutine finishes.
struct tidepool_coro_pool {
  tidepool::pool pool;
  explicit tidepool_coro_pool(std::size_t workers) : pool(tidepool::perf::tidepool_pool::options(workers)) {}
  template <class F>
  void post(F&& f) {
    static_cast<void>(tidepool::spawn(pool, run(std::forward<F>(f))));  // the handle is dropped: fire and forget
  }
  template <class F>
  static tidepool::co_task<void> run(F f) {
    f();
    co_return;
  }
};

// ---- pond110 ------------------------------------------------------------------------------------

std::atomic<long> g_live_payloads{0};
// Rounds whose payload exists / rounds whose 14 tasks have all finished: a live payload beyond
// the difference is retained by the scheduler.
std::atomic<long> g_rounds_created{0};
std::atomic<long> g_rounds_finished{0};

// Read finished first and created last: every race then counts a payload as unfinished rather
// than as retained, except one whose last task is between its count and its return.
long retained_payloads() {
  const long finished = g_rounds_finished.load();
  const long live = g_live_payloads.load();
  const long created = g_rounds_created.load();
  return std::max(0L, live - (created - finished));
}

// Samples RSS and live payloads on a thread of its own until stopped.
class sampler {
 public:
  sampler() : start_(clock_type::now()), thread_([this] { run(); }) {}
  ~sampler() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    thread_.join();
  }
  struct sample {
    double seconds;
    double rss_mib;
    long live_payloads;
    long retained_payloads;
  };
  const std::vector<sample>& samples() const { return samples_; }

 private:
  void run() {
    while (!stop_.load()) {
      samples_.push_back({std::chrono::duration<double>(clock_type::now() - start_).count(), rss_mib(),
                          g_live_payloads.load(), retained_payloads()});
      std::this_thread::sleep_for(5ms);
    }
  }
  clock_type::time_point start_;
  std::atomic<bool> stop_{false};
  std::vector<sample> samples_;
  std::thread thread_;
};

template <class Pool>
void BM_Pond110(benchmark::State& state, const std::string& scheduler) {
  const auto workers = static_cast<std::size_t>(state.range(0));
  const std::string configuration = std::to_string(workers) + "W";
  state.SetLabel("pond110/" + configuration);
  constexpr std::uint64_t tasks_per_round = 14;
  constexpr std::uint64_t rounds_in_flight = 8;
  double peak_rss = 0;
  long peak_live = 0;
  long peak_retained = 0;
  for (auto _ : state) {
    g_done.reset();
    g_rounds_created.store(0);
    g_rounds_finished.store(0);
    std::vector<std::atomic<std::uint32_t>> tasks_finished(g_rounds);
    std::atomic<std::uint64_t> sum{0};
    sampler samples;
    const auto start = clock_type::now();
    {
      Pool pool(workers);
      for (std::size_t round = 0; round < g_rounds; ++round) {
        while (round * tasks_per_round - g_done.total() > rounds_in_flight * tasks_per_round) {
          std::this_thread::sleep_for(20us);
        }
        auto data = std::make_shared<tidepool::perf::pond110_payload>(g_live_payloads);
        g_rounds_created.fetch_add(1);
        std::atomic<std::uint32_t>* finished = &tasks_finished[round];
        for (std::uint64_t t = 0; t < tasks_per_round; ++t) {
          pool.post([data, t, finished, &sum] {
            std::uint64_t s = 0;
            for (std::size_t i = t; i < data->bytes.size(); i += 4096) s += data->bytes[i];
            sum.fetch_add(s, std::memory_order_relaxed);
            if (finished->fetch_add(1) + 1 == tasks_per_round) g_rounds_finished.fetch_add(1);
            g_done.count_one();
          });
        }
      }
      g_done.wait_for(g_rounds * tasks_per_round);
    }
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    samples.stop();
    long retained_before = 0;
    for (const auto& s : samples.samples()) {
      peak_rss = std::max(peak_rss, s.rss_mib);
      peak_live = std::max(peak_live, s.live_payloads);
      // Retained in two samples in a row (5 ms apart): a payload whose last task has counted its
      // round finished but not yet returned (its captures go right after) is retained only for
      // that instant, by every scheduler alike; one a scheduler keeps stays.
      peak_retained = std::max(peak_retained, std::min(s.retained_payloads, retained_before));
      retained_before = s.retained_payloads;
    }
    if (!g_series_dir.empty()) {
      std::ofstream csv(g_series_dir + "/pond110_" + configuration + "_" + scheduler + ".csv");
      csv << "seconds,rss_mib,live_payloads,retained_payloads\n";
      for (const auto& s : samples.samples()) {
        csv << s.seconds << ',' << s.rss_mib << ',' << s.live_payloads << ',' << s.retained_payloads << '\n';
      }
    }
    // Each task reads 256 bytes of value 1 (1 MiB / 4096 strides).
    const std::uint64_t expected = g_rounds * tasks_per_round * ((1 << 20) / 4096);
    if (sum.load() != expected || g_done.total() != g_rounds * tasks_per_round) {
      state.SkipWithError("wrong answer: a task did not run exactly once");
      return;
    }
    if (g_live_payloads.load() != 0) {
      state.SkipWithError("wrong answer: payloads outlived the pool");
      return;
    }
  }
  state.counters["peak_rss_MiB"] = peak_rss;
  state.counters["peak_live_payloads"] = static_cast<double>(peak_live);
  state.counters["peak_retained_payloads"] = static_cast<double>(peak_retained);
}

// ---- queued -------------------------------------------------------------------------------------

template <class Pool>
void BM_Queued(benchmark::State& state) {
  constexpr std::size_t workers = 2;
  constexpr std::size_t queued = 1'000'000;
  double bytes_per_task = 0;
  double peak_rss = 0;
  for (auto _ : state) {
    g_done.reset();
    const auto start = clock_type::now();
    {
      Pool pool(workers);
      std::atomic<std::size_t> blocked{0};
      std::atomic<bool> release{false};
      for (std::size_t w = 0; w < workers; ++w) {
        pool.post([&] {
          blocked.fetch_add(1);
          while (!release.load()) std::this_thread::sleep_for(100us);
          g_done.count_one();
        });
      }
      while (blocked.load() < workers) std::this_thread::sleep_for(100us);
      const double before = rss_mib();
      for (std::size_t i = 0; i < queued; ++i) pool.post([] { g_done.count_one(); });
      const double after = rss_mib();
      peak_rss = after;
      bytes_per_task = (after - before) * 1024.0 * 1024.0 / static_cast<double>(queued);
      release.store(true);
      g_done.wait_for(queued + workers);
    }
    state.SetIterationTime(std::chrono::duration<double>(clock_type::now() - start).count());
    if (g_done.total() != queued + workers) {
      state.SkipWithError("wrong answer: a task did not run exactly once");
      return;
    }
  }
  state.counters["bytes_per_task"] = bytes_per_task;
  state.counters["peak_rss_MiB"] = peak_rss;
  state.SetLabel("queued/1M");
}

// ---- registration -------------------------------------------------------------------------------

// reference_model: the deliberately leaky pool, run once (pond110, 2 workers) to show what the
// scenario detects.
template <class Pool>
void register_scheduler(const std::string& name, bool reference_model = false) {
  auto* pond110 = benchmark::RegisterBenchmark(("pond110/" + name).c_str(), BM_Pond110<Pool>, name);
  pond110->ArgName("W")->Arg(2);
  if (!reference_model) pond110->Arg(10);
  pond110->Iterations(1)
      ->Repetitions(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  if (reference_model) return;
  benchmark::RegisterBenchmark(("queued/" + name).c_str(), BM_Queued<Pool>)
      ->Iterations(1)
      ->Repetitions(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

void register_all() {
  using namespace tidepool::perf;
#ifdef TIDEPOOL_PERF_QUEUE
  register_scheduler<tidepool_pool>("tidepool[" TIDEPOOL_PERF_QUEUE "]");
#else
  register_scheduler<tidepool_pool>("tidepool");
  register_scheduler<tidepool_coro_pool>("tidepool_coro");
  register_scheduler<tbb_arena_pool>("tbb_enqueue");
  register_scheduler<asio_pool>("asio_pool");
  register_scheduler<mutex_pool>("mutex_pool");
  register_scheduler<retaining_model_pool>("retaining_model", /*reference_model=*/true);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--series_dir=", 13) == 0) {
      g_series_dir = argv[i] + 13;
    } else {
      g_quick |= std::strcmp(argv[i], "--quick") == 0;
      args.push_back(argv[i]);
    }
  }
  register_all();
  tidepool::perf::summary_reporter reporter("bytes_per_task", "bytes of RSS per queued empty task (queued only)");
  return tidepool::perf::benchmark_main(static_cast<int>(args.size()), args.data(),
                                        {"--rounds=", &g_rounds, 4'000, "%zu pond110 rounds"}, reporter);
}
