// The non-template half of fork-join (include/tidepool/fork_join.hpp) and task groups: finding
// the calling thread's worker (and its index, this_worker.hpp), spawning onto its deque, taking
// a spawned job back, and the blocks of the groups' states.

#include <new>  // for ::operator delete

#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/fork_join.hpp"
#include "tidepool/task_group.hpp"
#include "tidepool/this_worker.hpp"

namespace tidepool::detail {
namespace {

// Set once the blocks were handed back: the thread keeps none from then on.
thread_local bool this_thread_group_state_blocks_released = false;

// Hands the blocks this thread kept back to the heap at its exit; constructed (and so destroyed
// at thread exit) when the thread keeps its first block.
struct group_state_blocks_release {
  ~group_state_blocks_release() {
    group_state_blocks& kept = this_thread_group_state_blocks;
    this_thread_group_state_blocks_released = true;
    kept.keeping = false;  // a group destroyed after this (by a later thread_local) is freed
    while (kept.count > 0) ::operator delete(kept.blocks[--kept.count]);
  }
};
thread_local group_state_blocks_release this_thread_group_state_blocks_release;

}  // namespace

void free_group_state_block(void* block) noexcept {
  group_state_blocks& kept = this_thread_group_state_blocks;
  // Under AddressSanitizer every state is a fresh allocation, so a use after free is reported
  // instead of hidden by reuse.
  if (!address_sanitizer && !kept.keeping && !this_thread_group_state_blocks_released) {
    static_cast<void>(&this_thread_group_state_blocks_release);  // constructs it, so it will run
    kept.keeping = true;
    kept.blocks[kept.count++] = block;  // the first block kept: count was 0
    return;
  }
  ::operator delete(block);
}

worker* worker_of(pool& p) noexcept { return pool_access::core(p).worker_of_this_thread(); }

bool spawn(worker& w, task_node* job) noexcept {
  const std::size_t before = w.deque.size_estimate();
  if (!w.deque.push(job)) return false;
  // A full fence on every spawn would be the largest cost of a fine-grained fork-join, so only
  // a job pushed onto a deque that held at most one item pays it, for a reliable wake-up
  // decision (the store→load argument in parking.cpp). "At most one", not "empty": a thief may
  // take the one item we saw right after we looked, and then its last-searcher check and a
  // parking worker's final look would both find the deque empty while our push sits in our
  // store buffer, and we, having seen a searcher, would wake nobody. With two or more items, a
  // thief that takes one still sees the next and passes the wake-up on (stop_searching), and
  // that wake-up takes microseconds, by which time our store is visible. If a job does go
  // unseen, it waits for the spawner or the next thief: parallelism lost, never the job — it is
  // on the spawner's own deque, and the spawner always joins it.
  if (before <= 1) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    test_hooks::at(test_hooks::point::after_spawn_fence);  // on the fenced path only: free elsewhere
  }
  w.core.wake_one_if_needed(&w);
  return true;
}

bool take_back(worker& w, task_node* job) noexcept {
  // Anything above the job on our deque was pushed after it by the first half (go() tasks it did
  // not wait for): run it now, it would run anyway. Then the job is on top, unless a thief took
  // it, in which case the pop returns something older (or nothing).
  while (task_node* t = w.deque.pop()) {
    if (t == job) return true;
    if (t->kind == task_kind::fork_join_job) {
      // An older job of an enclosing parallel_invoke on this thread, whose own job was stolen:
      // run it; its spawner will find it finished.
      w.core.execute(w, t, /*holds_slot=*/false);
      continue;
    }
    w.core.execute(w, t, /*holds_slot=*/true);
  }
  return false;
}

bool has_local_work(worker& w) noexcept { return !w.deque.empty_estimate(); }

}  // namespace tidepool::detail

namespace tidepool {

std::optional<std::size_t> this_worker_index() noexcept {
  if (const detail::worker* w = detail::current_worker()) return w->index;
  return std::nullopt;
}

}  // namespace tidepool
