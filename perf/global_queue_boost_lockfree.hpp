#pragma once
// tidepool's global queue replaced by boost::lockfree::queue (Michael–Scott with a free list),
// through lib/global_queue.hpp's seam; compiled only into perf/'s bench_*_boost_lockfree
// programs. Its nodes go back to a free list that is released only when the queue is destroyed,
// so the queue's memory stays at its high-water mark.

#include <boost/lockfree/queue.hpp>  // for boost::lockfree::queue

#include <atomic>   // for std::atomic_thread_fence
#include <cstddef>  // for std::size_t
#include <new>      // for std::bad_alloc

namespace tidepool::detail {

class global_queue {
 public:
  void enqueue(task_node* node) {
    if (!queue_.push(node)) throw std::bad_alloc();  // the free list is empty and new failed
    // The pool parks on a Dekker handshake: a submitter enqueues, then looks for sleepers; a
    // worker announces it sleeps, then looks at the queue. Our queue's seq_cst operations make
    // that sound; this queue's weaker ones need a full fence on both sides.
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  [[nodiscard]] std::size_t try_dequeue_bulk(task_node** out, std::size_t max) {
    std::size_t taken = 0;
    while (taken < max && queue_.pop(out[taken])) ++taken;
    return taken;
  }
  [[nodiscard]] bool empty_estimate() const {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return queue_.empty();
  }
  // boost::lockfree::queue keeps no count, and one kept here would be a line every submission
  // and every take write: a submitter to this queue never backs off (lib/submission.cpp).
  [[nodiscard]] std::size_t size_estimate() const noexcept { return 0; }
  [[nodiscard]] std::size_t segments_allocated() const noexcept { return 0; }
  [[nodiscard]] std::size_t unreclaimed_segments() const noexcept { return 0; }
  [[nodiscard]] std::size_t unreclaimed_segments_bound() const noexcept { return 0; }

 private:
  boost::lockfree::queue<task_node*> queue_{1024};  // initial free list; grows on demand
};

}  // namespace tidepool::detail
