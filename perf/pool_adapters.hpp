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
#include <deque>               // for std::deque
#include <functional>          // for std::function
#include <memory>              // for std::unique_ptr
#include <mutex>               // for std::mutex, std::unique_lock
#include <thread>              // for std::thread
#include <vector>              // for std::vector

#include "tidepool/tidepool.hpp"

namespace tidepool::perf {

struct tidepool_pool {
  tidepool::pool pool;
  explicit tidepool_pool(std::size_t workers) : pool(options(workers)) {}
  template <class F>
  void post(F&& f) {
    pool.go(std::forward<F>(f));
  }
  static tidepool::pool_options options(std::size_t workers) {
    tidepool::pool_options o;
    o.workers = workers;
    return o;
  }
};

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

// The floor: one mutex, one condition variable, one std::deque of std::function.
class mutex_pool {
 public:
  explicit mutex_pool(std::size_t workers) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { run(); });
  }
  ~mutex_pool() {
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
      tasks_.emplace_back(std::forward<F>(f));
    }
    ready_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tidepool::perf
