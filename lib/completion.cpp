// Continuations (task_completion.hpp) and the accessors the non-blocking layers need.

#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uintptr_t
#include <mutex>    // for std::mutex, std::lock_guard

#include "outcome.hpp"
#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/pool.hpp"

namespace tidepool::detail {
namespace {

// Registered continuations, by node, in a fixed set of locked lists. A node's state word has room
// for a bit, not a pointer, and a node carries no field for a waiter that few tasks have; so the
// bit says "look here", and only tasks someone awaits pay for the lock. 64 lists keep unrelated
// awaits from contending; a list holds the continuations of the nodes awaited right now.
struct alignas(cache_line_size) continuation_list {
  std::mutex lock;
  task_continuation* head = nullptr;
};
constexpr std::size_t continuation_lists = 64;
continuation_list registered[continuation_lists];

continuation_list& list_of(const task_node* node) noexcept {
  // Nodes are at least 48 bytes apart: the low bits say little.
  return registered[(reinterpret_cast<std::uintptr_t>(node) >> 6) % continuation_lists];
}

// Unlinks `c` if it is still in `list`; false if a publisher took it (and will run it).
bool unlink(continuation_list& list, const task_continuation* c) noexcept {
  const std::lock_guard hold(list.lock);
  for (task_continuation** at = &list.head; *at != nullptr; at = &(*at)->next) {
    if (*at == c) {
      *at = c->next;
      return true;
    }
  }
  return false;
}

}  // namespace

void run_continuations(const task_node* node) noexcept {
  continuation_list& list = list_of(node);
  task_continuation* mine = nullptr;
  {
    const std::lock_guard hold(list.lock);
    for (task_continuation** at = &list.head; *at != nullptr;) {
      task_continuation* c = *at;
      if (c->node == node) {
        *at = c->next;
        c->next = mine;
        mine = c;
      } else {
        at = &c->next;
      }
    }
  }
  // Outside the lock: a continuation may await another task whose node hashes here. Read `next`
  // before the call, after which `c` may be gone.
  while (mine != nullptr) {
    task_continuation* const c = mine;
    mine = c->next;
    c->on_finished(c);
  }
}

bool add_continuation(task_node* node, task_continuation* c) noexcept {
  c->node = node;
  continuation_list& list = list_of(node);
  {
    const std::lock_guard hold(list.lock);
    c->next = list.head;
    list.head = c;
  }
  test_hooks::at(test_hooks::point::after_continuation_registered);
  // Set the bit only while the outcome is not published: a publisher that sees it looks for us.
  std::uint32_t state = node->state.load(std::memory_order_acquire);
  while ((state & outcome_mask) == outcome_pending) {
    if ((state & continuation_bit) != 0 ||
        node->state.compare_exchange_weak(state, state | continuation_bit, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      return true;
    }
  }
  // Published already. Another continuation of the node may have set the bit, in which case the
  // publisher runs every continuation it finds: if it took ours, it runs it, and we say so.
  return !unlink(list, c);
}

pool_core& pool_of(const task_node* node) noexcept { return *node->owner->counting_pool(); }

bool on_worker_of(const pool_core& core) noexcept {
  const worker* w = current_worker();
  return w != nullptr && &w->core == &core;
}

bool pool_stopping(const pool_core& core) noexcept { return core.stopping(); }

void post_internal_job(pool_core& core, task_node* job) noexcept { core.schedule_internal(job); }

submit_status submit_node(pool& p, task_node* node, bool may_block) {
  return pool_access::core(p).submit(node, may_block);
}

}  // namespace tidepool::detail
