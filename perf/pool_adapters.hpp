#pragma once
// The thread pools compared in perf/, behind one interface: construct with a worker count,
// `post(f)` a fire-and-forget callable from any thread. Completion is detected by the benchmark
// itself (completion_counter), the same way for every pool, so no pool's own wait is measured.

#include <boost/asio/post.hpp>         // for boost::asio::post
#include <boost/asio/thread_pool.hpp>  // for boost::asio::thread_pool
#include <oneapi/tbb/global_control.h>  // for tbb::global_control
#include <oneapi/tbb/task_arena.h>      // for tbb::task_arena

#include <condition_variable>  // for std::condition_variable
#include <cstddef>             // for std::size_t
#include <cstdint>             // for std::uint32_t
#include <deque>               // for std::deque
#include <functional>          // for std::function
#include <memory>              // for std::unique_ptr
#include <mutex>               // for std::mutex, std::unique_lock
#include <thread>              // for std::thread
#include <vector>              // for std::vector

#include "tidepool/tidepool.hpp"

namespace tidepool::perf {

// SampleEvery: pool_options::latency_sample_every (the library's default, 64, unless a benchmark
// measures what the latency histograms cost).
template <std::uint32_t SampleEvery = tidepool::default_latency_sample_every>
struct tidepool_pool_sampling {
  tidepool::pool pool;
  explicit tidepool_pool_sampling(std::size_t workers) : pool(options(workers)) {}
  template <class F>
  void post(F&& f) {
    pool.go(std::forward<F>(f));
  }
  static tidepool::pool_options options(std::size_t workers) {
    tidepool::pool_options o;
    o.workers = workers;
    o.latency_sample_every = SampleEvery;
    return o;
  }
};
using tidepool_pool = tidepool_pool_sampling<>;

// oneTBB's fire-and-forget submission: task_arena::enqueue. By default oneTBB keeps
// hardware_concurrency − 1 worker threads (it expects the caller to join in); an enqueue-only
// user has no caller joining, so we allow `workers` worker threads.
struct tbb_arena_pool {
  tbb::global_control allow_workers;
  tbb::task_arena arena;
  explicit tbb_arena_pool(std::size_t workers)
      : allow_workers(tbb::global_control::max_allowed_parallelism, workers + 1),
        arena(static_cast<int>(workers), /*reserved_for_masters=*/0) {}
  template <class F>
  void post(F&& f) {
    arena.enqueue(std::forward<F>(f));
  }
};

struct asio_pool {
  boost::asio::thread_pool pool;
  explicit asio_pool(std::size_t workers) : pool(workers) {}
  ~asio_pool() { pool.join(); }
  template <class F>
  void post(F&& f) {
    boost::asio::post(pool, std::forward<F>(f));
  }
};

// The floor: one mutex, one condition variable, one buffer of std::function. Buffer has
// push(std::function<void()>&&), empty() and take(); bench_memory plugs in a leaky one.
template <class Buffer>
class basic_mutex_pool {
 public:
  explicit basic_mutex_pool(std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { run(); });
  }
  ~basic_mutex_pool() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
  }
  template <class F>
  void post(F&& f) {
    {
      std::lock_guard lock(mutex_);
      buffer_.push(std::function<void()>(std::forward<F>(f)));
    }
    ready_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || !buffer_.empty(); });
        if (buffer_.empty()) return;
        task = buffer_.take();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  Buffer buffer_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

class function_deque {
 public:
  void push(std::function<void()>&& f) { tasks_.push_back(std::move(f)); }
  [[nodiscard]] bool empty() const noexcept { return tasks_.empty(); }
  std::function<void()> take() {
    std::function<void()> f = std::move(tasks_.front());
    tasks_.pop_front();
    return f;
  }

 private:
  std::deque<std::function<void()>> tasks_;
};

using mutex_pool = basic_mutex_pool<function_deque>;

}  // namespace tidepool::perf
