// The worker loop: find a task, run it, publish its completion; when there is none, go idle.

#include <pthread.h>  // for pthread_setname_np

#include <algorithm>  // for std::min, std::max
#include <array>      // for std::array
#include <cstdlib>    // for std::abort
#include <string>     // for std::string

#include "pool_core.hpp"
#include "subpool_core.hpp"
#include "tidepool/detail/futex.hpp"
#include "tidepool/detail/task_group_state.hpp"

namespace tidepool::detail {
namespace {

thread_local worker* this_thread_worker = nullptr;

// How often a worker looks at the global queue before its own deque. A worker whose tasks keep
// spawning tasks would otherwise never get past its own deque, and external submissions would
// starve. Go's scheduler uses 61 for the same purpose: prime, so it does not fall into step with
// periodic task patterns, and rare enough that the deque keeps its LIFO cache locality.
constexpr std::uint64_t global_queue_interval = 61;

// How many tasks a worker takes from the global queue at once. Tokio takes up to half its local
// queue; we take fewer, so one worker does not sit on a burst while others are still waking up
// (they can steal from its deque, but stealing costs more than taking from the global queue).
constexpr std::size_t global_batch = 32;

// How many times a thief retries a victim that it lost a race on before moving to the next one:
// a lost race means the victim had work a moment ago.
constexpr int lost_race_retries = 2;

void name_this_thread(const std::string& base, std::size_t index) {
#if defined(__linux__)
  std::string name = base.substr(0, 10) + "-" + std::to_string(index);
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());  // Linux allows 15 characters
#else
  (void)base;
  (void)index;
#endif
}

}  // namespace

worker* current_worker() noexcept { return this_thread_worker; }

void worker_main(std::shared_ptr<pool_core> core, worker* w) {
  name_this_thread(core->options_.name, w->index);
  this_thread_worker = w;
  for (;;) {
    if (w->state.load(std::memory_order_acquire) == worker_state::retiring && core->retire(*w)) return;
    task_node* t = core->find_task(*w);
    if (t != nullptr) {
      core->stop_searching(*w);  // if we were woken as a searcher: pass the baton on
    } else {
      t = core->search(*w);
    }
    // Asked to retire while we were looking: whatever we found goes to the workers that stay, so
    // that nothing submitted after resize() returned runs here. acquire, and enough: resize()
    // set `retiring` before it returned, and the task reached us (queue, or a deque through
    // the global queue) by release/acquire pairs that began after that.
    if (t != nullptr && w->state.load(std::memory_order_acquire) == worker_state::retiring && core->retire(*w, t)) return;
    if (t != nullptr) {
      core->execute(*w, t, /*holds_slot=*/true);
      continue;
    }
    if (!core->park(*w)) break;
  }
  this_thread_worker = nullptr;
  // `core` may be the last owner (the pool was destroyed from one of its own tasks): it is
  // released here, on the way out, after this thread has stopped using it.
}

bool pool_core::retire(worker& w, task_node* found) noexcept {
  worker_state expected = worker_state::retiring;
  // A grow may have taken the retirement back: whoever moves the state first decides.
  if (!w.state.compare_exchange_strong(expected, worker_state::leaving, std::memory_order_acq_rel)) return false;
  stop_searching(w);
  // Hand our queued tasks to the others (an out-of-memory enqueue here ends the process: the
  // tasks could not be given to anyone else).
  if (found != nullptr) {
    global_.enqueue(found);
    w.counters.overflow_pushes.add();
  }
  while (task_node* t = w.deque.pop()) {
    global_.enqueue(t);
    w.counters.overflow_pushes.add();
  }
  unparked_.fetch_sub(1, std::memory_order_seq_cst);
  running_workers_.fetch_sub(1, std::memory_order_seq_cst);
  wake_one_if_needed(&w);
  // As in park(): we may have finished the last task a drain waiter is waiting for.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (stopping_.load(std::memory_order_seq_cst)) notify_drain();
  this_thread_worker = nullptr;
  w.state.store(worker_state::exited, std::memory_order_release);  // last touch of w
  return true;
}

task_node* pool_core::take_global(worker& w) noexcept {
  // Take a batch: one claim on the global queue instead of one per task (see try_dequeue_bulk).
  // The first task runs now; the rest go onto our deque, pushed newest first so that our LIFO
  // pops run them in queue order, and where idle workers can steal them.
  std::array<task_node*, global_batch> batch;
  const std::size_t room = w.deque.capacity() - w.deque.size_estimate();
  const std::size_t count = global_.try_dequeue_bulk(batch.data(), std::min(batch.size(), std::max<std::size_t>(room, 1)));
  if (count == 0) return nullptr;
  w.counters.global_pops.add(count);
  for (std::size_t i = count - 1; i > 0; --i) {
    if (!w.deque.push(batch[i])) std::abort();  // cannot happen: we counted the room, and only we push
  }
  if (count > 1) {
    // More than we can run at once: maybe someone can help. The pushes are plain stores; the
    // wake-up decision reads the parking counters: store→load needs the fence (parking.cpp).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    wake_one_if_needed(&w);
  }
  return batch[0];
}

task_node* pool_core::steal_for(worker& w) noexcept {
  const std::size_t n = workers_.size();
  if (n < 2) return nullptr;
  // xorshift: cheap, and different workers start their rounds at different victims.
  w.rng_state ^= w.rng_state << 13;
  w.rng_state ^= w.rng_state >> 7;
  w.rng_state ^= w.rng_state << 17;
  const std::size_t first = static_cast<std::size_t>(w.rng_state % n);
  for (std::size_t i = 0; i < n; ++i) {
    worker& victim = *workers_[(first + i) % n];
    if (&victim == &w) continue;
    for (int attempt = 0; attempt <= lost_race_retries; ++attempt) {
      w.counters.steal_attempts.add();
      const steal_result<task_node> r = victim.deque.steal();
      if (r.status == steal_status::success) {
        w.counters.steals.add();
        return r.item;
      }
      if (r.status == steal_status::empty) break;
    }
  }
  return nullptr;
}

task_node* pool_core::find_task(worker& w) noexcept {
  if (++w.tick % global_queue_interval == 0) {
    if (task_node* t = take_global(w)) return t;
  }
  // The empty check first: pop on an empty deque still pays its full fence, and a worker whose
  // tasks come from the global queue would pay it for every task. Only we push, so "empty" here
  // cannot be wrong in the direction that matters.
  if (!w.deque.empty_estimate()) {
    if (task_node* t = w.deque.pop()) return t;
  }
  if (task_node* t = take_global(w)) return t;
  return steal_for(w);
}

void pool_core::report_unhandled(std::exception_ptr error) noexcept {
  if (!options_.on_unhandled_exception) return;
  try {
    options_.on_unhandled_exception(std::move(error));
  } catch (...) {  // the handler's own failure must not take the worker down
  }
}

namespace {

// Makes the outcome visible to the handle (or the fork-join spawner) and wakes it if it sleeps.
// For a fork-join job this is the last touch of the node, which lives on the spawner's stack:
// the wake-up passes only the word's address to the kernel.
void publish(task_node* node, std::uint32_t outcome) noexcept {
  // release: the result (or exception) stored by `run` happens-before the waiter's acquire.
  const std::uint32_t before = node->state.exchange(outcome, std::memory_order_acq_rel);
  if ((before & waiter_bit) != 0) futex_wake_all(node->state);
}

// The last touches of a finished task: its group and its subpool may be destroyed by their
// owners as soon as these return. The group first: a group never outlives its pool or subpool.
void finish_owners(task_group_state* group, subpool_core* sub) noexcept {
  if (group != nullptr) group->task_finished();
  if (sub != nullptr) sub->task_done();
}

}  // namespace

void pool_core::execute(worker& w, task_node* node, bool holds_slot) noexcept {
  if (node->kind == task_kind::fork_join_job) {
    // Not a submitted task: not counted, holds no slot, owned by the spawner's stack frame.
    node->ops(node, task_op::run);
    publish(node, node->error != nullptr ? outcome_failed : outcome_succeeded);
    return;
  }
  if (node->kind == task_kind::subpool_runner) {
    // Internal: runs one task of a subpool (which counts that task itself), holds no slot.
    node->ops(node, task_op::run);
    release_task_node(node);
    return;
  }
  task_group_state* const group = node->group;
  subpool_core* const sub = node->sub;
  if (cancelling_.load(std::memory_order_relaxed) || (group != nullptr && group->cancelled())) {
    // Skipped: the pool's stop token fired, or its group failed or was stopped, before it started.
    node->ops(node, task_op::cancel);
    w.counters.cancelled.add();
    if (sub != nullptr) sub->on_cancelled();
    if (holds_slot) release_slot();
    if (node->kind == task_kind::with_handle) publish(node, outcome_cancelled);
    release_task_node(node);
    finish_owners(group, sub);
    return;
  }

  w.counters.started.add();
  if (sub != nullptr) sub->on_started();
  const std::uint64_t submitted_at = node->submit_time();
  std::uint64_t started_at = 0;
  if (submitted_at != 0) {
    started_at = steady_nanoseconds();
    w.queue_wait.record((started_at - submitted_at) & task_node::submit_time_mask);
  }
  node->ops(node, task_op::run);  // destroys the callable and its captures, whatever happens
  if (submitted_at != 0) w.run_time.record(steady_nanoseconds() - started_at);

  const bool failed = node->error != nullptr;
  if (failed && group != nullptr) {
    group->record_failure(node->error);  // the first one cancels the group
  } else if (failed && node->kind == task_kind::fire_and_forget) {
    report_unhandled(node->error);
  }
  if (node->kind == task_kind::fire_and_forget) node->error = nullptr;
  // Count before publishing, so whoever observes the completion also sees it counted.
  (failed ? w.counters.failed : w.counters.succeeded).add();
  if (sub != nullptr) sub->on_finished(failed);
  if (holds_slot) release_slot();
  if (node->kind == task_kind::with_handle) publish(node, failed ? outcome_failed : outcome_succeeded);
  release_task_node(node);
  finish_owners(group, sub);
}

}  // namespace tidepool::detail
