#pragma once
// when_all's machinery: start N children so that idle workers can steal them, and resume the
// parent when the last one finishes.
//
// Every child has room for a job node of its own, embedded in the when_all's state in the
// parent's frame (task_kind::embedded_job: the worker never touches it after its run, so the run
// may end the frame's life), constructed when it is offered, holding a range of children to
// start. The parent, suspending, offers the job of child 1 with the range 1 .. N-1 and transfers
// to child 0 at once (on the parent's thread, no queue involved). A job whose range holds
// several children splits it: it offers the job of the first child of the upper half, with that
// half, and keeps the lower half, down to its own child, which it resumes. So each child's node
// is offered at most once, thieves take the biggest ranges first, and forking allocates nothing.
//
// Offered where (lazy splitting, as parallel_reduce's auto_partitioner does it): onto the
// worker's deque if the deque is empty, where a thief can take it; but while the deque already
// holds a job that no thief has taken, a thief would take that one first, so the job is kept on
// the worker's thread instead (lib/coro.cpp: a small ring, no fences), and a range is not split
// any more but kept whole. A kept job is offered on the deque as soon as the deque is seen empty
// (by the next offer or take-back on that thread: a thief took what was there), and every kept
// job is offered when the worker's run returns (the after-run hook of task_completion.hpp,
// which pool_core::execute calls), whatever the coroutine suspended on: no kept child waits
// behind a coroutine that is suspended. What stays possible: a
// child that waits for a sibling without suspending (spinning, blocking a worker) may wait for a
// sibling its worker kept, until the worker's next run.
//
// A child that finishes while others are still running takes back the newest job its worker
// kept, else the newest job of its worker's deque if it is a when_all job (usually its own
// siblings, not stolen), and transfers to it, else returns to its worker's loop; the last to
// finish resumes the parent by symmetric transfer (join_counter). Nobody blocks and nobody
// helps.
//
// When the deque is full (a deep tree keeps a job waiting per level), a job goes to the pool's
// global queue, where any worker, this one included, runs it from its loop: run in place, it
// would nest the rest of the tree in the stack. Off a worker thread (possible only for a
// coroutine type other than co_task awaiting when_all), a job runs at once on the offering
// thread: the children then run one after the other there, up to their first suspension.

#include <atomic>       // for std::atomic
#include <coroutine>    // for std::coroutine_handle, std::noop_coroutine
#include <cstdint>      // for std::uint32_t
#include <new>          // for placement new
#include <type_traits>  // for std::is_trivially_destructible_v

#include "tidepool/detail/coro_jobs.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

struct join_counter;

// The job of one child of a when_all: starts children [first, last), this child being `first`.
// Constructed only when offered (child_job_slot): a fib when_all offers one of its two.
struct child_job : task_node {
  join_counter* join;
  std::uint32_t first;
  std::uint32_t last;

  child_job(join_counter& j, std::uint32_t first_child, std::uint32_t end) noexcept
      : join(&j), first(first_child), last(end) {
    ops = &run;
    kind = task_kind::embedded_job;
  }

  // Offers the upper halves as the jobs of their first children and returns this job's child,
  // to be resumed. Reads the when_all's state for the last time: once that child runs, all may
  // finish and the state (this node included) go. `w`: the calling thread's worker, or null.
  [[nodiscard]] std::coroutine_handle<> split(worker* w) noexcept;

  // Puts the job of children [first, end) on w's deque (or, with the deque full, the global
  // queue; off a worker, runs it here).
  static void offer(join_counter& join, std::uint32_t first, std::uint32_t end, worker* w) noexcept;
  // The job of children [first, end), built in its slot, not offered yet.
  static child_job* place(join_counter& join, std::uint32_t first, std::uint32_t end) noexcept;

  static void run(task_node* node, task_op op) noexcept {
    if (op == task_op::run) static_cast<child_job*>(node)->split(current_worker()).resume();  // embedded jobs only run
  }

  // The newest job on w's deque if it is a when_all child's (the caller runs it).
  [[nodiscard]] static child_job* take_back_newest(worker& w) noexcept {
    return static_cast<child_job*>(take_back_local_job(w, &run));
  }
};
static_assert(std::is_trivially_destructible_v<child_job>, "a child_job is never destroyed, only overwritten");

// Room for one child's job, left unconstructed until the job is offered.
union child_job_slot {
  child_job_slot() noexcept {}  // nothing: most slots are never used
  child_job job;
};

// when_all's count of unfinished children; the last child to finish resumes the parent.
//
// The count is touched by several threads only when some child was stolen. A child that
// finishes looks at its worker's newest job: if that is its own when_all's range of children,
// never started, and the count says nobody else is unfinished, then no other thread refers to
// the count, and the range runs here next: the count is set, not decremented, and the last child
// sees 1 and needs no read-modify-write either. A range kept whole (see above) is always that
// case, and so is the two-child case (fib): no locked instruction when nothing is stolen.
struct join_counter {
  std::atomic<std::uint32_t> unfinished{0};
  std::coroutine_handle<> parent;
  std::coroutine_handle<>* children = nullptr;  // the when_all's children, in argument order
  child_job_slot* jobs = nullptr;               // their jobs, likewise

  // Called by each child once its result is in its slot and its frame is gone.
  [[nodiscard]] std::coroutine_handle<> child_finished() noexcept {
    // acquire: the results of children that finished elsewhere (their release, in the fetch_sub
    // or the store below) happen-before the parent, which we resume, reads them.
    const std::uint32_t left = unfinished.load(std::memory_order_acquire);
    if (left == 1) return transfer_to(parent);  // we are the only one unfinished: nobody else touches it
    worker* const w = current_worker();  // once: the take-back and the split's offers share it
    child_job* const job = w != nullptr ? child_job::take_back_newest(*w) : nullptr;
    if (job == nullptr) return count_out(std::noop_coroutine());  // back to the worker's loop
    if (job->join == this && left == job->last - job->first + 1) {
      // release: a thief of a later split of the range reads the count after our push.
      unfinished.store(left - 1, std::memory_order_release);
      return transfer_to(job->split(w));
    }
    // Another when_all's job (or ours, with other children still running elsewhere).
    if (counted_out_last()) {
      child_job::offer(*job->join, job->first, job->last, w);  // back on the deque, for later
      return transfer_to(parent);
    }
    return transfer_to(job->split(w));
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

inline std::coroutine_handle<> child_job::split(worker* w) noexcept {
  std::uint32_t end = last;
  while (end - first > 1) {
    // While a job already waits for a thief, the rest is kept here whole, so that the child that
    // finishes next takes all of it back and, the join's only user, counts with a plain store.
    if (w != nullptr && keep_local_job(*w, place(*join, first + 1, end))) break;
    const std::uint32_t middle = first + (end - first) / 2;
    offer(*join, middle, end, w);
    end = middle;
  }
  return join->children[first];
}

inline void child_job::offer(join_counter& join, std::uint32_t first, std::uint32_t end, worker* w) noexcept {
  // A slot is offered at most once at a time: by the split that owns its range, or put back
  // by the child that took it (child_finished). The deque's push publishes the fields to a
  // thief (release fence in the push).
  child_job* const job = place(join, first, end);
  if (!offer_local_job(w, job)) run(job, task_op::run);
}

inline child_job* child_job::place(join_counter& join, std::uint32_t first, std::uint32_t end) noexcept {
  return ::new (static_cast<void*>(&join.jobs[first].job)) child_job(join, first, end);
}

// Starts children 1 .. n-1 as stealable jobs and returns children[0], to transfer to; every
// child points at its slot and at the join already. `n` >= 1; `jobs` has n entries.
inline std::coroutine_handle<> start_when_all(std::coroutine_handle<>* children, child_job_slot* jobs, std::uint32_t n,
                                              join_counter& join, std::coroutine_handle<> parent) noexcept {
  join.parent = parent;
  join.children = children;
  join.jobs = jobs;
  // relaxed: the children are started below, by the push that publishes the join (release in
  // the deque) or on this thread.
  join.unfinished.store(n, std::memory_order_relaxed);
  if (n > 1) child_job::offer(join, 1, n, current_worker());
  return transfer_to(children[0]);
}

}  // namespace tidepool::detail
