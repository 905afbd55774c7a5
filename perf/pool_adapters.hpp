#pragma once
// The thread pools compared in perf/, behind one interface: construct with a worker count,
// `post(f)` a fire-and-forget callable from any thread, and, from inside one of its tasks,
// `parallel_for(n, f)` calls f(0) ... f(n - 1) with the pool's own fork-join (`fork_join` is
// true) or, for pools without one, in a serial loop. Completion is detected by the benchmark
// itself (completion_counter), the same way for every pool, so no pool's own wait is measured.

#include <boost/asio/post.hpp>         // for boost::asio::post
#include <boost/asio/thread_pool.hpp>  // for boost::asio::thread_pool
#include <oneapi/tbb/global_control.h>  // for tbb::global_control
#include <oneapi/tbb/parallel_for.h>    // for tbb::parallel_for
#include <oneapi/tbb/task_arena.h>      // for tbb::task_arena

#include <algorithm>           // for std::min
#include <condition_variable>  // for std::condition_variable
#include <cstddef>             // for std::size_t
#include <cstdint>             // for std::uint32_t
#include <deque>               // for std::deque
#include <functional>          // for std::function
#include <mutex>               // for std::mutex, std::unique_lock
#include <thread>              // for std::thread
#include <utility>             // for std::exchange, std::forward, std::move
#include <vector>              // for std::vector

#include "tidepool/tidepool.hpp"

namespace tidepool::perf {

// SampleEvery: pool_options::latency_sample_every (the library's default, 64, unless a benchmark
// measures what the latency histograms cost).
template <std::uint32_t SampleEvery = tidepool::default_latency_sample_every>
struct tidepool_pool_sampling {
  static constexpr bool fork_join = true;
  tidepool::pool pool;
  explicit tidepool_pool_sampling(std::size_t workers) : pool(options(workers)) {}
  template <class F>
  void post(F&& f) {
    pool.go(std::forward<F>(f));
  }
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    tidepool::parallel_for(pool, std::size_t{0}, n, std::forward<F>(f), /*grain=*/1);
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
  static constexpr bool fork_join = true;
  tbb::global_control allow_workers;
  tbb::task_arena arena;
  explicit tbb_arena_pool(std::size_t workers)
      : allow_workers(tbb::global_control::max_allowed_parallelism, workers + 1),
        arena(static_cast<int>(workers), /*reserved_for_masters=*/0) {}
  template <class F>
  void post(F&& f) {
    arena.enqueue(std::forward<F>(f));
  }
  // Called from a task of the arena, tbb::parallel_for runs in that arena.
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    tbb::parallel_for(std::size_t{0}, n, std::forward<F>(f));
  }
};

// Asio's documented fire-and-forget call. Asio's scheduler already signals its condition
// variable only when a thread waits, and only outside its lock.
struct asio_pool {
  static constexpr bool fork_join = false;
  boost::asio::thread_pool pool;
  explicit asio_pool(std::size_t workers) : pool(workers) {}
  ~asio_pool() { pool.join(); }
  template <class F>
  void post(F&& f) {
    boost::asio::post(pool, std::forward<F>(f));
  }
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    for (std::size_t i = 0; i < n; ++i) f(i);
  }
};

// The floor: one mutex, one condition variable, one buffer of std::function, written as a careful
// user would. Buffer has push(std::function<void()>&&), empty() and take(); bench_memory plugs in
// a leaky one.
//   * The std::function is built before the lock is taken (a capture too large for its inline
//     storage allocates), and once run it is destroyed with the lock released.
//   * A producer signals only when a worker waits, and after releasing the lock, so the woken
//     worker does not block at once on the mutex the producer still holds.
//   * A worker takes up to max_batch tasks per lock, but never more than its share of what is
//     queued (ceil(queued / workers)): a worker alone with a long queue locks once per batch,
//     while at low load every task is taken on its own and any idle worker can start the next.
template <class Buffer>
class basic_mutex_pool {
 public:
  static constexpr bool fork_join = false;
  static constexpr std::size_t max_batch = 16;

  explicit basic_mutex_pool(std::size_t workers) : workers_(workers) {
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
    std::function<void()> task(std::forward<F>(f));
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      buffer_.push(std::move(task));
      ++queued_;
      wake = waiting_ > 0;
    }
    if (wake) ready_.notify_one();
  }
  template <class F>
  void parallel_for(std::size_t n, F&& f) {
    for (std::size_t i = 0; i < n; ++i) f(i);
  }

 private:
  void run() {
    std::function<void()> batch[max_batch];
    std::unique_lock lock(mutex_);
    for (;;) {
      while (queued_ == 0 && !stopping_) {
        ++waiting_;
        ready_.wait(lock);
        --waiting_;
      }
      if (queued_ == 0) return;  // stopping, and nothing left to run
      const std::size_t share = std::min(max_batch, (queued_ + workers_ - 1) / workers_);
      for (std::size_t i = 0; i < share; ++i) batch[i] = buffer_.take();
      queued_ -= share;
      lock.unlock();
      // Each task is destroyed as soon as it has run: nothing it captured outlives it.
      for (std::size_t i = 0; i < share; ++i) std::exchange(batch[i], nullptr)();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  Buffer buffer_;
  std::size_t queued_ = 0;   // tasks in buffer_
  std::size_t waiting_ = 0;  // workers blocked in ready_.wait
  bool stopping_ = false;
  const std::size_t workers_;
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
