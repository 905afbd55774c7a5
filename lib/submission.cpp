// Admission, counting and placement of new tasks.

#include <sched.h>  // for sched_yield

#include <atomic>  // for std::atomic_thread_fence

#include <algorithm>  // for std::min

#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/detail/futex.hpp"

namespace tidepool::detail {
namespace {

// A subpool's runner or a coroutine's job: placed like a task, never counted or refused.
bool is_internal_job(const task_node& node) noexcept {
  return node.kind == task_kind::internal_job || node.kind == task_kind::embedded_job;
}

}  // namespace

pool_core::admission pool_core::admit(worker* self, bool may_block) {
  if (slot_limit_.load(std::memory_order_acquire) == unbounded) return admission::admitted;
  std::size_t used = in_flight_.load(std::memory_order_relaxed);
  for (;;) {
    while (used < slot_limit_.load(std::memory_order_acquire)) {
      if (in_flight_.compare_exchange_weak(used, used + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) {
        return admission::admitted;
      }
    }
    // Full. A worker never blocks on its own pool: every worker could end up blocked and nothing
    // would ever free a slot. So it runs the new task itself, now, ahead of the queued ones (the
    // one exception to submission order, documented in pool.hpp).
    if (self != nullptr) return may_block && !options_.non_blocking ? admission::run_inline : admission::full;
    if (!may_block || options_.non_blocking) return admission::full;

    // Block until a slot frees or the pool stops. The epoch is read before we announce
    // ourselves and re-check, so a release in between makes the wait return at once.
    const std::uint32_t epoch = capacity_epoch_.load(std::memory_order_seq_cst);
    blocked_submitters_.fetch_add(1, std::memory_order_seq_cst);
    used = in_flight_.load(std::memory_order_seq_cst);
    if (used >= slot_limit_.load(std::memory_order_seq_cst) && !stopping_.load(std::memory_order_seq_cst)) {
      futex_wait(capacity_epoch_, epoch);
    }
    blocked_submitters_.fetch_sub(1, std::memory_order_relaxed);
    if (stopping_.load(std::memory_order_seq_cst)) return admission::stopped;
    used = in_flight_.load(std::memory_order_relaxed);
  }
}

void pool_core::release_slot() noexcept {
  if (slot_limit_.load(std::memory_order_relaxed) == unbounded) return;
  // seq_cst on both: Dekker with admit(), which announces itself in blocked_submitters_ and
  // then re-reads in_flight_. Either it sees our release, or we see it and wake it.
  in_flight_.fetch_sub(1, std::memory_order_seq_cst);
  if (blocked_submitters_.load(std::memory_order_seq_cst) > 0) {
    capacity_epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_one(capacity_epoch_);
  }
}

void pool_core::refuse(task_node* node) noexcept {
  count_dropped();
  discard_task_node(node);
}

void pool_core::sample_submit_time(task_node* node) const noexcept {
  const std::uint32_t every = options_.latency_sample_every;
  if (every == 0) return;
  // Per thread, shared by every pool: a plain counter, no shared cache line.
  thread_local std::uint32_t until_next_sample = 0;
  // The count is shared by every pool the thread submits to: clamped, so a pool that samples
  // more often than the last one does not wait out that one's longer period.
  until_next_sample = std::min(until_next_sample, every);
  if (until_next_sample > 1) {
    --until_next_sample;
    return;
  }
  until_next_sample = every;
  node->set_submit_time(steady_nanoseconds());
}

submit_status pool_core::submit(task_node* node, bool may_block) {
  // In a child process after fork() nothing would ever run it (and admit() could block forever
  // on slots held by the parent's tasks).
  if (forked_away()) {
    refuse(node);
    return submit_status::forked;
  }
  if (worker* self = worker_of_this_thread()) return submit_from_worker(*self, node, may_block);

  // From outside. Announce ourselves first, before anything that may block or touch the pool:
  // the task we are about to publish may be the one that destroys the pool, and shutdown()
  // waits until no external thread is inside submit().
  external_submissions::shard& mine = external_.of_this_thread();
  mine.inside.fetch_add(1, std::memory_order_seq_cst);
  // release: everything this submit did to the pool happens-before shutdown's acquire load.
  const auto leave = [&mine] { mine.inside.fetch_sub(1, std::memory_order_release); };
  submit_status status;
  try {
    status = submit_external(mine, node, may_block);
  } catch (...) {
    leave();
    discard_task_node(node);
    throw;
  }
  leave();
  // A refused task's callable is destroyed only now, after our last touch of the pool: its
  // captures may hold the last reference to the pool, whose destruction waits for us to leave.
  if (status != submit_status::accepted) discard_task_node(node);
  return status;
}

// Counts a refusal as dropped but leaves the node to the caller (see submit()). Throws only if
// the task could not be queued (std::bad_alloc), with the submission taken back.
submit_status pool_core::submit_external(external_submissions::shard& mine, task_node* node, bool may_block) {
  if (stopping_.load(std::memory_order_seq_cst)) {
    count_dropped();
    return submit_status::stopped;
  }
  const admission admitted = admit(nullptr, may_block);
  if (admitted != admission::admitted) {
    count_dropped();
    return admitted == admission::full ? submit_status::full : submit_status::stopped;
  }
  // Count first, then check stopping, both seq_cst. stop_and_wait() sets stopping and then reads
  // the count, so either it sees this task and waits for it, or we see the stop and take the
  // task back.
  mine.accepted.fetch_add(1, std::memory_order_seq_cst);
  count_at_level(mine, node->priority(), /*add=*/true);
  test_hooks::at(test_hooks::point::after_external_accept);
  if (stopping_.load(std::memory_order_seq_cst)) {
    take_back(mine, node->priority());
    return submit_status::stopped;
  }
  sample_submit_time(node);  // accepted: its queue wait starts now
  if (node->owner == nullptr) node->owner = &direct_tasks_;  // a group's task keeps its group
  try {
    schedule(nullptr, node);
  } catch (...) {  // only std::bad_alloc, for a new queue segment
    take_back(mine, node->priority());
    throw;
  }
  return submit_status::accepted;
}

submit_status pool_core::submit_from_worker(worker& self, task_node* node, bool may_block) {
  if (stopping_.load(std::memory_order_acquire)) {
    refuse(node);
    return submit_status::stopped;
  }
  const admission admitted = admit(&self, may_block);
  if (admitted == admission::full) {
    refuse(node);
    return submit_status::full;
  }
  // A task of ours is running on this thread, so stop_and_wait cannot finish before it does,
  // and it reads our count after the task's own finish: no fence needed against stop().
  self.counters.submitted.add();
  count_at_level(self, node->priority(), /*add=*/true);
  sample_submit_time(node);  // accepted: its queue wait starts now
  if (node->owner == nullptr) node->owner = &direct_tasks_;  // a group's task keeps its group
  if (admitted == admission::run_inline) {
    self.counters.inline_runs.add();
    execute(self, node, /*holds_slot=*/false);
    return submit_status::accepted;
  }
  try {
    schedule(&self, node);
  } catch (...) {  // only std::bad_alloc, for a new queue segment on overflow: take it back
    self.counters.submitted.subtract();
    count_at_level(self, node->priority(), /*add=*/false);
    release_slot();
    refuse(node);
    throw;
  }
  return submit_status::accepted;
}

bool pool_core::count_accepted(worker* self, priority level) noexcept {
  if (self != nullptr) {
    // As in submit_from_worker: the running task keeps stop_and_wait from finishing first.
    if (stopping_.load(std::memory_order_acquire)) return false;
    self->counters.submitted.add();
    count_at_level(*self, level, /*add=*/true);
    return true;
  }
  // As in submit: count, then check, both seq_cst, against stop_and_wait's set-then-read.
  external_submissions::shard& mine = external_.of_this_thread();
  mine.accepted.fetch_add(1, std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) {
    mine.accepted.fetch_sub(1, std::memory_order_seq_cst);
    notify_drain();
    return false;
  }
  // Not through the global queue (the subpool's own): metrics tell the two apart.
  mine.accepted_for_subpools.fetch_add(1, std::memory_order_relaxed);
  count_at_level(mine, level, /*add=*/true);
  return true;
}

void pool_core::uncount_accepted(worker* self, priority level) noexcept {
  if (self != nullptr) {
    self->counters.submitted.subtract();
    count_at_level(*self, level, /*add=*/false);
  } else {
    external_submissions::shard& mine = external_.of_this_thread();
    mine.accepted_for_subpools.fetch_sub(1, std::memory_order_relaxed);
    count_at_level(mine, level, /*add=*/false);
    mine.accepted.fetch_sub(1, std::memory_order_seq_cst);
    notify_drain();
  }
}

void pool_core::count_at_level(external_submissions::shard& mine, priority level, bool add) noexcept {
  if (level == priority::normal) return;
  // relaxed: the enqueue that follows publishes it to the worker that starts the task, whose
  // release of its own count orders both before a metrics reader's acquire.
  auto& count = mine.accepted_at_level[level_of(level)];
  if (add) {
    count.fetch_add(1, std::memory_order_relaxed);
  } else {
    count.fetch_sub(1, std::memory_order_relaxed);
  }
}

void pool_core::count_at_level(worker& self, priority level, bool add) noexcept {
  if (level == priority::normal) return;
  owned_counter& count = self.counters.submitted_at_level[level_of(level)];
  if (add) {
    count.add();
  } else {
    count.subtract();
  }
}

void pool_core::count_due_at_level(priority level, bool add) noexcept {
  if (worker* self = worker_of_this_thread()) {
    count_at_level(*self, level, add);
  } else {
    count_at_level(external_.of_this_thread(), level, add);
  }
}

void pool_core::take_back(external_submissions::shard& mine, priority level) noexcept {
  count_at_level(mine, level, /*add=*/false);
  mine.accepted.fetch_sub(1, std::memory_order_seq_cst);
  release_slot();
  count_dropped();
  notify_drain();  // a drain waiter may have counted the task
}

external_submissions::shard& external_submissions::of_this_thread() noexcept {
  static std::atomic<std::size_t> next_shard{0};
  thread_local const std::size_t index = next_shard.fetch_add(1, std::memory_order_relaxed) % shard_count;
  return shards_[index];
}

// The one place that decides where an accepted task goes.
//   * Tasks a task_group submits from inside a task of this pool are fork-join, and so are the
//     runner jobs of a subpool that such a task submitted to: they go onto the worker's own
//     deque, where the waiting task finds them first. If the deque is full they run here and
//     now, so deep recursion never strands work where a waiter past the helping cap would not
//     look (each level is one stack frame, as in serial recursion).
//   * Everything else — submissions from any thread, a task's own submissions to the pool —
//     goes to the global queue, which is FIFO: tasks from one thread start in the order they
//     were submitted (up to one batch apart, see worker.cpp), and what a task submits waits
//     behind what was submitted before it, from inside the pool or outside.
void pool_core::schedule(worker* self, task_node* node) {
  if (self == nullptr) {
    queue_globally(nullptr, node);
    return;
  }
  const bool runner = is_internal_job(*node);
  if (!runner && (node->owner == nullptr || !node->owner->stays_local())) {
    queue_globally(self, node);
    return;
  }
  if (!self->deque.push(node)) {
    if (!runner) self->counters.inline_runs.add();
    execute(*self, node, /*holds_slot=*/true);
    return;
  }
  self->counters.local_pushes.add();
  // The deque push is a plain store; the wake-up decision below reads the parking counters.
  // Store→load needs a full fence (parking.cpp has its half of the argument).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  wake_one_if_needed(self);
}

void pool_core::queue_globally(worker* self, task_node* node) {
  // Read before the enqueue: once it is queued, a worker may run the node and free it.
  const bool external_runner = self == nullptr && is_internal_job(*node);
  const unsigned level = level_of(node->priority());
  // The enqueue's ticket fetch_add is a seq_cst read-modify-write: it serves as the fence
  // before the wake-up decision.
  global_.enqueue(node, level);
  if (self != nullptr) {
    self->counters.global_pushes.add();
  } else if (external_runner) {
    external_runner_pushes_.fetch_add(1, std::memory_order_relaxed);
  }
  wake_one_if_needed(self);
  if (self == nullptr) yield_if_far_ahead(level);
}

// Why a thread outside the pool sometimes yields after a submission.
//
// With more threads than cores (workers plus producers), a producer that keeps submitting to a
// queue already far ahead of the workers takes CPU time from them, and they are what the queue
// waits for; two producers running at once also bounce the queue's ticket line between their
// cores at every submission. A mutex pool gets out of this by accident: the producer that finds
// the lock taken sleeps, and the other runs alone. So every far_ahead_look_every submissions a
// producer reads the queue's size estimate (one relaxed load) and, past far_ahead_queued tasks,
// calls sched_yield(): the CPU goes to a worker waiting for it, and if none waits the call
// returns at once (well under a microsecond per 256 submissions). Tasks submitted meanwhile
// start no later: the queue is that long. Measured, M tasks/s, 1 worker × 2 producers, 2M empty
// tasks: a plain loop of 8 runs, 17.9–18.7 against 11.9–18.3 before (median 12.5); bench_server
// submit, 5 runs alternated with the build before, medians 21.2 against 13.2 (the mutex pool
// 14–17 in the same runs), but later runs of it read 9–11 as often as 21, as its 2-worker rows
// do with or without this. 1 × 1 is unchanged (18.6 in both); 2 × 2 too (a median of 14 in the
// plain loop for both builds: fast when the two producers share a CPU, 13–14 when they do not).
namespace {
constexpr std::uint32_t far_ahead_look_every = 256;
constexpr std::size_t far_ahead_queued = 16'384;  // 64 segments
}  // namespace

void pool_core::yield_if_far_ahead(unsigned level) noexcept {
  // Per thread, shared by every pool it submits to: a plain counter, no shared line.
  thread_local std::uint32_t until_look = far_ahead_look_every;
  if (--until_look != 0) return;
  until_look = far_ahead_look_every;
  if (global_.level(level).size_estimate() < far_ahead_queued) return;
  test_hooks::at(test_hooks::point::before_far_ahead_yield);
  sched_yield();
}

bool pool_core::try_queue_globally(worker& self, task_node* job) noexcept {
  try {
    queue_globally(&self, job);
    return true;
  } catch (...) {  // std::bad_alloc: no new segment
    return false;
  }
}

void pool_core::cancel() noexcept {
  cancelling_.store(true, std::memory_order_seq_cst);
  stop();
}

void pool_core::stop() noexcept {
  stopping_.store(true, std::memory_order_seq_cst);
  // Submitters blocked on a full queue must learn that they are refused.
  capacity_epoch_.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(capacity_epoch_);
  // So must those blocked on a full subpool. Not in a child after fork(): nobody blocks there,
  // and the registry's lock may have been held by a thread that does not exist in the child.
  if (forked_away()) return;
  wake_blocked_subpool_submitters();
  // Delayed tasks not due yet are cancelled, periodic timers end (timer_queue.hpp).
  timers_.close_and_cancel_all();
}

}  // namespace tidepool::detail
