// The non-template half of fork-join (include/tidepool/fork_join.hpp) and task groups: finding
// the calling thread's worker, spawning onto its deque, taking a spawned job back, and the
// blocks of the groups' states.

#include <array>    // for std::array
#include <cstddef>  // for std::size_t
#include <new>      // for ::operator new, ::operator delete

#include "pool_core.hpp"
#include "test_hooks.hpp"
#include "tidepool/fork_join.hpp"
#include "tidepool/task_group.hpp"

namespace tidepool::detail {
namespace {

// Trivially destructible, so it can still be read after this_thread_group_blocks is destroyed:
// a group destroyed by a thread_local destroyed later must still be able to free its state.
thread_local bool this_thread_group_blocks_destroyed = false;

// Blocks for task_group_state: fork-join code makes a group per call and destroys it on the same
// thread, so a few blocks kept per thread serve nearly every group without malloc, whose
// malloc+free pair would cost as much as the rest of a small group. A block freed on another
// thread (an orphaned group's last task) joins that thread's blocks, or the heap if they are full.
struct group_blocks {
  static constexpr std::size_t capacity = 8;
  std::array<void*, capacity> blocks;
  std::size_t count = 0;
  ~group_blocks() {
    this_thread_group_blocks_destroyed = true;
    while (count > 0) ::operator delete(blocks[--count]);
  }
};
thread_local group_blocks this_thread_group_blocks;

// Under AddressSanitizer every state is a fresh allocation, so a use after free is reported
// instead of hidden by reuse.
bool group_blocks_usable() noexcept { return !address_sanitizer && !this_thread_group_blocks_destroyed; }

}  // namespace

void* task_group_state::operator new(std::size_t size) {
  if (group_blocks_usable() && this_thread_group_blocks.count > 0) {
    return this_thread_group_blocks.blocks[--this_thread_group_blocks.count];
  }
  return ::operator new(size);
}

void task_group_state::operator delete(void* block) noexcept {
  if (group_blocks_usable() && this_thread_group_blocks.count < group_blocks::capacity) {
    this_thread_group_blocks.blocks[this_thread_group_blocks.count++] = block;
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
