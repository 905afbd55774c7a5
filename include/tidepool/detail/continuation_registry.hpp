#pragma once
// Where the continuations of awaited tasks wait (task_completion.hpp's add_continuation): a
// fixed set of locked lists, keyed by node. A node's state word has room for a bit, not a
// pointer, and a node carries no field for a waiter that few tasks have; so the node's
// continuation_bit says "look in your list", and only tasks someone awaits pay for a lock.
//
// The handshake with the thread that publishes the outcome (publish_outcome, lib/outcome.hpp,
// which sets the outcome bits with one acq_rel read-modify-write and then, if it saw the bit,
// calls run_registered):
//   * An awaiter first enlists its continuation (under the list's lock), then sets the bit with
//     a CAS that succeeds only while the outcome bits are clear. If the CAS succeeds, the
//     publisher's later read-modify-write reads the bit (or a later value of the word), so it
//     looks in the list, and the lock orders our enlisting before its search: it finds us.
//   * If the awaiter finds the outcome published instead, the publisher may or may not have
//     looked: it looked if another awaiter set the bit. So the awaiter withdraws its entry under
//     the lock; if the entry is gone, the publisher took it and runs it, and the awaiter must
//     report it as coming (true), not refused.
//   * The loads that find the outcome published are acquire (the CAS's failure order too): the
//     publisher's release of the result happens-before the awaiter, which reads it inline.
// Continuations run outside the lock, in the order they were enlisted.
//
// Templated over the node, the continuation and the mutex so that the Relacy model
// (test/relacy/models.cpp, continuation_handshake) runs this very code.

#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint32_t, std::uintptr_t
#include <mutex>    // for std::lock_guard

#include "tidepool/detail/atomics.hpp"
#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

// Node: has `state`, an atomic std::uint32_t with task_node's bits. Continuation: has
// `Continuation* next`, `const Node* node` and `void (*on_finished)(Continuation*) noexcept`.
template <class Node, class Continuation, class Mutex, std::size_t Lists>
class continuation_registry {
 public:
  // Puts `c` in the list of `node`. Then mark_or_withdraw.
  void enlist(Node* node, Continuation* c) noexcept {
    c->node = node;
    list& l = list_of(node);
    const std::lock_guard hold(l.lock);
    c->next = l.head;
    l.head = c;
  }

  // Sets the node's continuation bit while its outcome is unpublished: true, c will be run.
  // If the outcome is published: false if `c` was still listed (withdrawn now, never run), true
  // if the publisher took it (it runs it, maybe right now).
  [[nodiscard]] bool mark_or_withdraw(Node* node, Continuation* c) noexcept {
    const std::memory_order seen_order =
        mutated(mutant::continuation_state_load_relaxed) ? std::memory_order_relaxed : std::memory_order_acquire;
    std::uint32_t state = node->state.load(seen_order);
    while ((state & outcome_mask) == outcome_pending) {
      if ((state & continuation_bit) != 0 ||
          node->state.compare_exchange_weak(state, state | continuation_bit, std::memory_order_acq_rel, seen_order)) {
        return true;
      }
    }
    const bool withdrawn = withdraw(node, c);
    if (mutated(mutant::continuation_refused_after_taken)) return false;
    return !withdrawn;
  }

  // For the publisher that saw the bit: takes the node's continuations out and runs them.
  void run_registered(const Node* node) noexcept {
    list& l = list_of(node);
    Continuation* taken = nullptr;
    {
      const std::lock_guard hold(l.lock);
      for (Continuation** at = &l.head; *at != nullptr;) {
        Continuation* c = *at;
        if (c->node == node) {
          *at = c->next;
          c->next = taken;
          taken = c;  // reversed: the list is newest first, so this is enlisting order
        } else {
          at = &c->next;
        }
      }
    }
    // Outside the lock: a continuation may await another task in the same list. `next` is read
    // before the call, after which `c` may be gone.
    while (taken != nullptr) {
      Continuation* const c = taken;
      taken = c->next;
      c->on_finished(c);
    }
  }

 private:
  struct alignas(cache_line_size) list {
    Mutex lock;
    Continuation* head = nullptr;
  };

  list& list_of(const Node* node) noexcept {
    // Nodes are at least 48 bytes apart: the low bits say little.
    return lists_[(reinterpret_cast<std::uintptr_t>(node) >> 6) % Lists];
  }

  bool withdraw(const Node* node, const Continuation* c) noexcept {
    list& l = list_of(node);
    const std::lock_guard hold(l.lock);
    for (Continuation** at = &l.head; *at != nullptr; at = &(*at)->next) {
      if (*at == c) {
        *at = c->next;
        return true;
      }
    }
    return false;
  }

  list lists_[Lists];
};

}  // namespace tidepool::detail
