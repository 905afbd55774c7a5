#pragma once
// Publishing a task's outcome: the one place every path that finishes or skips a task with a
// handle (the worker, cancel(), the timer queue, complete_deferred) goes through.

#include <cstdint>  // for std::uint32_t

#include "tidepool/detail/futex.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

// Runs and forgets the continuations registered for `node` (lib/completion.cpp).
void run_continuations(const task_node* node) noexcept;

// Makes `outcome` visible to the node's handle, wakes a blocked waiter and runs continuations.
// For a fork-join job this is the last touch of the node, which lives on the spawner's stack:
// the wake-up passes only the word's address to the kernel. Inline: every fork-join job ends here.
inline void publish_outcome(task_node* node, std::uint32_t outcome) noexcept {
  // release: the result (or exception) stored by the run happens-before the waiter's acquire.
  // fetch_or: the outcome bits are still clear (one publication per task); extras_bit and the
  // rest stay, for the node's last release.
  const std::uint32_t before = node->state.fetch_or(outcome | claimed_bit, std::memory_order_acq_rel);
  if ((before & waiter_bit) != 0) futex_wake_all(node->state);
  // A continuation's registration happens-before the read-modify-write that set the bit (its
  // list's lock, then add_continuation's release), and ours reads that write: we find the
  // registration. The awaiter's handle keeps the node alive until its continuation has run.
  if ((before & continuation_bit) != 0) run_continuations(node);
}

}  // namespace tidepool::detail
