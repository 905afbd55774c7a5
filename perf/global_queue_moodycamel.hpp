#pragma once
// tidepool's global queue replaced by moodycamel::ConcurrentQueue, through lib/global_queue.hpp's
// seam; compiled only into perf/'s bench_*_moodycamel programs. No producer or consumer tokens:
// submitters are arbitrary threads. moodycamel keeps per-producer blocks and reuses them; its
// memory is freed only when the queue is destroyed. It orders tasks per producer only, and a
// token-less dequeue scans producers newest first, so with several producers an older one's
// tasks can wait behind a busy newer one's: its latency tails are not FIFO tails.

#include <concurrentqueue.h>  // for moodycamel::ConcurrentQueue

#include <atomic>   // for std::atomic_thread_fence
#include <cstddef>  // for std::size_t
#include <new>      // for std::bad_alloc

namespace tidepool::detail {

class global_queue {
 public:
  void enqueue(task_node* node) {
    if (!queue_.enqueue(node)) throw std::bad_alloc();
    // The pool parks on a Dekker handshake: a submitter enqueues, then looks for sleepers; a
    // worker announces it sleeps, then looks at the queue. Our queue's seq_cst operations make
    // that sound; this queue's weaker ones need a full fence on both sides.
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  [[nodiscard]] std::size_t try_dequeue_bulk(task_node** out, std::size_t max) {
    return queue_.try_dequeue_bulk(out, max);
  }
  [[nodiscard]] bool empty_estimate() const {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return queue_.size_approx() == 0;
  }
  [[nodiscard]] std::size_t size_estimate() const noexcept { return queue_.size_approx(); }
  [[nodiscard]] std::size_t segments_allocated() const noexcept { return 0; }
  [[nodiscard]] std::size_t unreclaimed_segments() const noexcept { return 0; }
  [[nodiscard]] std::size_t unreclaimed_segments_bound() const noexcept { return 0; }

 private:
  moodycamel::ConcurrentQueue<task_node*> queue_;
};

}  // namespace tidepool::detail
