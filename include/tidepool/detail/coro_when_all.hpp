#pragma once
// when_all's machinery: start N children so that idle workers can steal them, and resume the
// parent when the last one finishes.
//
// Every child has a job node of its own, embedded in the when_all's state in the parent's frame
// (task_kind::embedded_job: the worker never touches it after its run, so the run may end the
// frame's life), holding a range of children to start. The parent, suspending, offers the job
// of child 1 with the range 1 .. N-1 on its worker's deque and transfers to child 0 at once (on
// the parent's thread, no queue involved). A job whose range holds several children splits it:
// it offers the job of the first child of the upper half, with that half, and keeps the lower
// half, down to its own child, which it resumes. So each child's node is offered at most once,
// the deque holds O(log N) jobs per when_all however many children there are, thieves take the
// biggest ranges first, and forking allocates nothing.
// A child that finishes while others are still running takes the newest job of its worker's
// deque back if it is a when_all job (usually its own siblings, not stolen) and transfers to
// it, else returns to its worker's loop; the last to finish resumes the parent by symmetric
// transfer (join_counter). Nobody blocks and nobody helps.
//
// Off a worker thread (possible only for a coroutine type other than co_task awaiting
// when_all), or when the deque is full, a job runs at once on the offering thread instead: the
// children then run one after the other there, up to their first suspension.

#include <atomic>     // for std::atomic
#include <coroutine>  // for std::coroutine_handle, std::noop_coroutine
#include <cstdint>    // for std::uint32_t

#include "tidepool/detail/coro_jobs.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

// The job of one child of a when_all: starts children [first, last), this child being `first`.
struct child_job : task_node {
  std::coroutine_handle<>* children = nullptr;  // the when_all's children, in argument order
  child_job* jobs = nullptr;                    // their jobs, likewise
  std::uint32_t first = 0;
  std::uint32_t last = 0;

  child_job() noexcept {
    ops = &run;
    kind = task_kind::embedded_job;
  }

  // Offers the upper halves as the jobs of their first children and returns this job's child,
  // to be resumed. Reads the when_all's state for the last time: once that child runs, all may
  // finish and the state (this node included) go.
  [[nodiscard]] std::coroutine_handle<> split() noexcept {
    std::uint32_t end = last;
    while (end - first > 1) {
      const std::uint32_t middle = first + (end - first) / 2;
      jobs[middle].offer(end);
      end = middle;
    }
    return children[first];
  }

  // Puts this job, for children [its own, end), on this worker's deque (or runs it here).
  void offer(std::uint32_t end) noexcept {
    last = end;
    // The deque's push publishes the fields above to a thief (release fence in the push).
    if (!push_local_job(this)) run(this, task_op::run);
  }

  static void run(task_node* node, task_op op) noexcept {
    if (op == task_op::run) static_cast<child_job*>(node)->split().resume();  // embedded jobs only run
  }

  // The newest job on this worker's deque if it is a when_all child's (the caller runs it).
  [[nodiscard]] static child_job* take_back_newest() noexcept {
    return static_cast<child_job*>(take_back_local_job(&run));
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
    child_job* const job = child_job::take_back_newest();
    if (job == nullptr) return count_out(std::noop_coroutine());  // back to the worker's loop
    if (job->children == children && left == job->last - job->first + 1) {
      // release: a thief of a later split of the range reads the count after our push.
      unfinished.store(left - 1, std::memory_order_release);
      return transfer_to(job->split());
    }
    // Another when_all's job (or ours, with other children still running elsewhere).
    if (counted_out_last()) {
      job->offer(job->last);  // back on the deque, for later
      return transfer_to(parent);
    }
    return transfer_to(job->split());
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

// Starts children 1 .. n-1 as stealable jobs and returns children[0], to transfer to; every
// child points at its slot and at the join already. `n` >= 1; `jobs` has n entries.
inline std::coroutine_handle<> start_when_all(std::coroutine_handle<>* children, child_job* jobs, std::uint32_t n,
                                              join_counter& join, std::coroutine_handle<> parent) noexcept {
  join.parent = parent;
  join.children = children;
  for (std::uint32_t i = 0; i < n; ++i) {
    jobs[i].children = children;
    jobs[i].jobs = jobs;
    jobs[i].first = i;
  }
  // relaxed: the children are started below, by the push that publishes the jobs (release in
  // the deque) or on this thread.
  join.unfinished.store(n, std::memory_order_relaxed);
  if (n > 1) jobs[1].offer(n);
  return transfer_to(children[0]);
}

}  // namespace tidepool::detail
