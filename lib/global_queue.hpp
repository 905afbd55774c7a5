#pragma once
// The global queue's type, behind the one seam through which perf/ swaps it for another MPMC
// queue (moodycamel::ConcurrentQueue, boost::lockfree::queue) to measure what ours costs or buys.
// The library itself is always built with the segmented queue: only perf/ defines
// TIDEPOOL_GLOBAL_QUEUE_HEADER, naming a header that defines tidepool::detail::global_queue with
// the same members as default_global_queue below.

#include <cstddef>  // for std::size_t

#include "tidepool/detail/segmented_queue.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

// The members the pool uses:
//   enqueue(task_node*)                 may throw std::bad_alloc; never fails otherwise
//   try_dequeue_bulk(task_node**, max)  takes up to max tasks, oldest first; 0 if none
//   empty_estimate()                    true if it looked empty (may be stale)
//   size_estimate()                     about how many are queued, cheaply (may be stale; 0 if
//                                       the queue cannot tell: then no submitter backs off)
//   segments_allocated(), unreclaimed_segments(), unreclaimed_segments_bound()   for metrics
class default_global_queue : public segmented_queue<task_node> {
 public:
  // Whole segments, so at most a segment per live segment too many, and the retired segments not
  // yet freed (a small bound, hazard_pointers.hpp): one relaxed load.
  [[nodiscard]] std::size_t size_estimate() const noexcept { return segments_allocated() * segment_size; }
  [[nodiscard]] std::size_t unreclaimed_segments() const noexcept { return reclamation_domain().unreclaimed(); }
  [[nodiscard]] std::size_t unreclaimed_segments_bound() const noexcept {
    return reclamation_domain().unreclaimed_bound();
  }
};

}  // namespace tidepool::detail

#ifdef TIDEPOOL_GLOBAL_QUEUE_HEADER
#include TIDEPOOL_GLOBAL_QUEUE_HEADER
#else
namespace tidepool::detail {
using global_queue = default_global_queue;
}  // namespace tidepool::detail
#endif
