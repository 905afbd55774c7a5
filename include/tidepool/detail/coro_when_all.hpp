#pragma once
// when_all's machinery: start N children so that idle workers can steal them, and resume the
// parent when the last one finishes.
//
// The parent, suspending, offers children 1 .. N-1 as one internal job on its worker's deque
// and transfers to child 0 at once (it runs on the parent's thread, no queue involved). A job
// covering several children splits itself: it offers the upper half as a job of its own and
// keeps the lower half, down to one child, which it resumes. So the deque holds O(log N) jobs per
// when_all however many children there are, and thieves take the biggest ranges first.
// A child that finishes while others are still running takes the newest job of its worker's
// deque back if it is a when_all job (usually its own siblings, not stolen) and transfers to
// it, else returns to its worker's loop; the last to finish resumes the parent by symmetric
// transfer (join_counter). Nobody blocks and nobody helps. Job nodes taken back are kept per
// thread and reused, so forking allocates nothing while nothing is stolen.
//
// Off a worker thread (possible only for a coroutine type other than co_task awaiting
// when_all), or when the deque is full or no node can be allocated, a job runs at once on the
// offering thread instead: the children then run one after the other there, up to their first
// suspension.

#include <atomic>     // for std::atomic
#include <coroutine>  // for std::coroutine_handle, std::noop_coroutine
#include <cstdint>    // for std::uint32_t
#include <new>        // for std::bad_alloc
#include <type_traits>  // for std::is_trivially_destructible_v, std::is_trivially_copy_assignable_v

#include "tidepool/detail/coro_jobs.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

// Starts children [first, last) of a when_all.
struct start_children {
  std::coroutine_handle<>* children;
  std::uint32_t first;
  std::uint32_t last;

  void operator()() const noexcept { split().resume(); }

  // Offers the upper halves as jobs of their own and returns the first child, to be resumed.
  // Reads the when_all's state for the last time: once that child runs, all may finish.
  [[nodiscard]] std::coroutine_handle<> split() const noexcept {
    std::uint32_t end = last;
    while (end - first > 1) {
      const std::uint32_t middle = first + (end - first) / 2;
      offer(start_children{children, middle, end});
      end = middle;
    }
    return children[first];
  }

  static void offer(start_children job) noexcept {
    task_node* node = take_kept_job_node();  // taken back earlier: an internal job of this kind
    if (node != nullptr) {
      stored<start_children>(node) = job;
    } else {
      try {
        node = make_task_node<start_children, void>(job, task_kind::internal_job);
      } catch (const std::bad_alloc&) {
        job();  // no memory for a job: run the range here
        return;
      }
    }
    if (!push_local_job(node)) run_job_here(node);
  }

  // The newest job on this worker's deque if it is one of these (the caller runs it), else null.
  [[nodiscard]] static task_node* take_back_newest() noexcept {
    return take_back_local_job(&task_ops<start_children, void>);
  }
};

// when_all's count of unfinished children; the last child to finish resumes the parent.
//
// The count is touched by several threads only when some child was stolen. A child that
// finishes first looks at its worker's newest job: if that is its own when_all's range of
// children, never started, and the count says nobody else is unfinished, then no other thread
// refers to the count, and the range runs here next: the count is set, not decremented, and the
// last child sees 1 and needs no read-modify-write either. The two-child case (fib) thus costs
// no locked instruction when nothing is stolen.
struct join_counter {
  std::atomic<std::uint32_t> unfinished{0};
  std::coroutine_handle<> parent;
  std::coroutine_handle<>* children = nullptr;

  // Called by each child once its result is in its slot and its frame is gone.
  [[nodiscard]] std::coroutine_handle<> child_finished() noexcept {
    // acquire: the results of children that finished elsewhere (their release, in the fetch_sub
    // or the store below) happen-before the parent, which we resume, reads them.
    std::uint32_t left = unfinished.load(std::memory_order_acquire);
    if (left == 1) return transfer_to(parent);  // we are the only one unfinished: nobody else touches it
    task_node* const job = start_children::take_back_newest();
    if (job == nullptr) return count_out(std::noop_coroutine());  // back to the worker's loop
    const start_children range = stored<start_children>(job);
    keep_job_node(job);  // for the next offer on this thread (nothing to destroy in it)
    if (range.children == children && left == range.last - range.first + 1) {
      // release: a thief of a later split of the range reads the count after our push.
      unfinished.store(left - 1, std::memory_order_release);
      return transfer_to(range.split());
    }
    // Another when_all's job (or ours, with other children still running elsewhere).
    if (counted_out_last()) {
      start_children::offer(range);  // back to a deque, for later
      return transfer_to(parent);
    }
    return transfer_to(range.split());
  }

 private:
  [[nodiscard]] bool counted_out_last() noexcept {
    // acq_rel: every child's result (written before its release) happens-before the last
    // child's acquire, and so before the parent, which that child resumes, reads the results.
    return unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1;
  }
  std::coroutine_handle<> count_out(std::coroutine_handle<> then) noexcept {
    return counted_out_last() ? transfer_to(parent) : then;
  }
};

static_assert(std::is_trivially_destructible_v<start_children> && std::is_trivially_copy_assignable_v<start_children>,
              "a job taken back is kept and reused without destroying its callable");

// Points every child at its slot and at the join, then starts children 1 .. n-1 as stealable
// jobs; the caller transfers to children[0]. `n` >= 1.
inline std::coroutine_handle<> start_when_all(std::coroutine_handle<>* children, std::uint32_t n, join_counter& join,
                                              std::coroutine_handle<> parent) noexcept {
  join.parent = parent;
  join.children = children;
  // relaxed: the children are started below, by the push that publishes the jobs (release in
  // the deque) or on this thread.
  join.unfinished.store(n, std::memory_order_relaxed);
  if (n > 1) start_children::offer(start_children{children, 1, n});
  return transfer_to(children[0]);
}

}  // namespace tidepool::detail
