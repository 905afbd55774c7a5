// The worker loop: find a task, run it, publish its completion; when there is none, go idle.

#include <pthread.h>  // for pthread_setname_np

#include <string>  // for std::string

#include "pool_core.hpp"
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
    task_node* t = core->find_task(*w);
    if (t != nullptr) {
      core->stop_searching(*w);  // if we were woken as a searcher: pass the baton on
    } else {
      t = core->search(*w);
    }
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

task_node* pool_core::take_global(worker& w) noexcept {
  task_node* t = global_.try_dequeue();
  if (t != nullptr) w.counters.global_pops.add();
  return t;
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
  if (task_node* t = w.deque.pop()) return t;
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

}  // namespace

void pool_core::execute(worker& w, task_node* node, bool holds_slot) noexcept {
  if (node->kind == task_kind::fork_join_job) {
    // Not a submitted task: not counted, holds no slot, owned by the spawner's stack frame.
    node->ops(node, task_op::run);
    publish(node, node->error != nullptr ? outcome_failed : outcome_succeeded);
    return;
  }
  task_group_state* const group = node->group;
  if (group != nullptr && group->cancelled()) {
    // Skipped: its group failed or was stopped before it started.
    node->ops(node, task_op::cancel);
    w.counters.cancelled.add();
    if (holds_slot) release_slot();
    if (node->kind == task_kind::with_handle) publish(node, outcome_cancelled);
    release_task_node(node);
    group->task_finished();  // last: the group's owner may return and destroy it
    return;
  }

  w.counters.started.add();
  node->ops(node, task_op::run);  // destroys the callable and its captures, whatever happens

  const bool failed = node->error != nullptr;
  if (failed && group != nullptr) {
    group->record_failure(node->error);  // the first one cancels the group
  } else if (failed && node->kind == task_kind::fire_and_forget) {
    report_unhandled(node->error);
  }
  if (node->kind == task_kind::fire_and_forget) node->error = nullptr;
  // Count before publishing, so whoever observes the completion also sees it counted.
  (failed ? w.counters.failed : w.counters.succeeded).add();
  if (holds_slot) release_slot();
  if (node->kind == task_kind::with_handle) publish(node, failed ? outcome_failed : outcome_succeeded);
  release_task_node(node);
  if (group != nullptr) group->task_finished();  // last: the group's owner may return and destroy it
}

}  // namespace tidepool::detail
