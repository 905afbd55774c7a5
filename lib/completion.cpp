// Continuations (task_completion.hpp) and the accessors the non-blocking layers need.

#include <mutex>  // for std::mutex

#include "outcome.hpp"
#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/detail/continuation_registry.hpp"
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/pool.hpp"

namespace tidepool::detail {
namespace {

// 64 lists keep unrelated awaits from contending; a list holds the continuations of the nodes
// being awaited right now.
continuation_registry<task_node, task_continuation, std::mutex, 64> registered;

}  // namespace

void run_continuations(const task_node* node) noexcept { registered.run_registered(node); }

bool add_continuation(task_node* node, task_continuation* c) noexcept {
  registered.enlist(node, c);
  test_hooks::at(test_hooks::point::after_continuation_registered);
  return registered.mark_or_withdraw(node, c);
}

pool_core& pool_of(const task_node* node) noexcept { return *node->owner->counting_pool(); }

bool on_worker_of(const pool_core& core) noexcept {
  const worker* w = current_worker();
  return w != nullptr && &w->core == &core;
}

bool pool_stopping(const pool_core& core) noexcept { return core.stopping(); }

void post_internal_job(pool_core& core, task_node* job) noexcept {
  // Not run in place when our deque is full, as schedule() would run it: a resumption run here
  // nests the coroutine in this stack, and a tree of coroutines that each move to the pool
  // (co_await schedule(pool)) while their siblings fill the deque would nest its whole depth.
  worker* const self = core.worker_of_this_thread();
  // The estimate can only shrink meanwhile (only we push): full now means a push could fail.
  const bool deque_full = self != nullptr && self->deque.size_estimate() >= self->deque.capacity();
  if (deque_full && core.try_queue_globally(*self, job)) return;
  // Onto our deque; or, full and no memory for a new queue segment, run here after all.
  core.schedule_internal(job);
}

submit_status submit_node(pool& p, task_node* node, bool may_block) {
  return pool_access::core(p).submit(node, may_block);
}

}  // namespace tidepool::detail
