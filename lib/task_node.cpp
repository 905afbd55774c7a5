// Task-node allocation: nodes of three sizes (48, 64 and 128 bytes) carved from 64 KiB blocks, handed
// out through per-thread caches, with a shared depot that moves whole batches between threads, so
// a submit costs no malloc in the common case.
//
// Why blocks: a 48-byte node from malloc costs 64 bytes of heap (its chunk header and rounding), a
// 128-byte one 144; carved from a block, a node costs its size plus a share of the block's
// header slot. A queued go() task with a small capture then costs its 48-byte node and the
// queue's 8-byte slot.
//
// Why a depot: nodes are freed where a task's last reference drops (a worker, or the thread that
// held the handle), and allocated where tasks are submitted (often a thread outside the pool). A
// purely thread-local cache would fill on the workers and run dry on the submitter. Batches of
// `batch_size` cross through the depot under one mutex acquisition, so its cost is amortised
// over 64 nodes. Everything cached is an empty node: the no-retention rule holds in caches too.
//
// Memory goes back to the system: past the depot's limit, freed nodes return to their block, and
// a block whose every node has returned is freed. What can stay allocated after a burst is bounded
// by the caches (128 nodes per thread), the depot (16,384 nodes per size), the blocks those pin
// (each cached node may keep its 64 KiB block alive) and 16 spare empty blocks per size.

#include <pthread.h>   // for pthread_atfork
#include <sys/mman.h>  // for mmap, munmap

#include <algorithm>  // for std::copy, std::copy_n
#include <array>      // for std::array
#include <cstddef>    // for std::byte, std::size_t
#include <cstdint>    // for std::uintptr_t
#include <cstring>    // for std::memcpy
#include <memory>     // for std::make_unique
#include <mutex>      // for std::mutex, std::lock_guard
#include <new>        // for placement new, std::bad_alloc
#include <vector>     // for std::vector

#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/prefetch.hpp"
#include "tidepool/detail/sanitizers.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {
namespace {

constexpr std::size_t batch_size = 64;
constexpr std::size_t local_limit = 2 * batch_size;
// 16,384 empty nodes (0.75 to 2 MiB) at most in the depot: enough to absorb a burst of queued tasks
// without churn between submitter and workers, small next to what the burst itself used.
constexpr std::size_t depot_batch_limit = 256;
constexpr std::size_t block_bytes = 64 * 1024;
constexpr std::size_t spare_block_limit = 16;  // 1 MiB per node size
// How far ahead allocate_task_node asks for a node's lines: 8 submissions are about 400 ns on this
// VM, more than a line's round trip between its two dies (about 350 ns). 4, 8 and 16 measured
// alike with the two threads on one die.
constexpr std::size_t prefetch_distance = 8;

// Caches hold node pointers in arrays, not in a list threaded through the nodes: freeing a node
// then writes nothing into it. The worker that ran a task has only read its node, so when the
// submitter reuses it the cache line is merely shared, not owned elsewhere, which is markedly
// cheaper to take back than a line the worker last wrote.
using batch = std::array<task_node*, batch_size>;

// A block: this header, the indexes of the nodes returned to it, then the nodes. Aligned to its
// size, so a node finds its block by masking its address. Nodes at home (not handed out) are the
// ones never handed out yet (from `carved` on: untouched memory) and the returned ones, whose
// indexes are stacked in the header. Nothing is written into a node at home, and taking one
// reads only the header: a list threaded through the nodes cost a cache miss per node taken (a
// third of submission throughput when a burst had gone home).
struct block {
  block* prev = nullptr;  // in the size's list of blocks with nodes at home
  block* next = nullptr;
  std::uint32_t carved = 0;    // nodes handed out at least once: indexes 0 to carved - 1
  std::uint32_t home = 0;      // never handed out, or returned
  std::uint32_t returned = 0;  // entries of returned_indexes()
  std::uint16_t* returned_indexes() noexcept { return reinterpret_cast<std::uint16_t*>(this + 1); }
};

// Where the nodes of a size start in a block and how many there are: after the header and one
// 2-byte index per node, rounded up to a cache line.
struct block_layout {
  std::size_t first_node;
  std::uint32_t nodes;
};
constexpr block_layout layout_for(std::size_t node_bytes) noexcept {
  const std::size_t nodes = (block_bytes - cache_line_size - sizeof(block)) / (node_bytes + sizeof(std::uint16_t));
  const std::size_t header = sizeof(block) + nodes * sizeof(std::uint16_t);
  return {(header + cache_line_size - 1) / cache_line_size * cache_line_size, static_cast<std::uint32_t>(nodes)};
}
static_assert(layout_for(48).first_node + layout_for(48).nodes * 48 <= block_bytes);
static_assert(layout_for(128).first_node + layout_for(128).nodes * 128 <= block_bytes);

// A fresh block, aligned to its size, straight from the kernel: malloc's aligned allocation put
// 8 KiB of padding and headers around each 64 KiB block (measured: 80.6 bytes of RSS per queued
// 64-byte node, against 72.6 with mapped blocks).
std::byte* map_block() {
  void* mapped = mmap(nullptr, 2 * block_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(mapped);
  const std::uintptr_t aligned = (start + block_bytes - 1) & ~(std::uintptr_t{block_bytes} - 1);
  // Keep [aligned, aligned + block_bytes), give the rest back.
  if (aligned > start) munmap(mapped, aligned - start);
  const std::uintptr_t tail = aligned + block_bytes;
  if (start + 2 * block_bytes > tail) munmap(reinterpret_cast<void*>(tail), start + 2 * block_bytes - tail);
  return reinterpret_cast<std::byte*>(aligned);
}

// One node size: its depot and its blocks, under one mutex. Built in static storage and never
// destroyed: thread caches hand their nodes back at thread exit, which may come after static
// destruction has begun; first reached from noexcept code, where an allocation must not fail.
class size_class {
 public:
  explicit size_class(node_size size) noexcept
      : size_(size), node_bytes_(node_bytes(size)), layout_(layout_for(node_bytes_)) {}

  // Fills `out` with batch_size nodes; throws std::bad_alloc if none can be had.
  void take_batch(task_node** out) {
    std::lock_guard lock(mutex_);
    if (!depot_.empty()) {
      std::copy(depot_.back().begin(), depot_.back().end(), out);
      depot_.pop_back();
      return;
    }
    std::size_t taken = 0;
    try {
      for (; taken < batch_size; ++taken) out[taken] = take_from_blocks();
    } catch (...) {  // no memory for a new block: nothing taken
      while (taken > 0) return_home(out[--taken]);
      throw;
    }
  }

  [[nodiscard]] task_node* take_one() {
    std::lock_guard lock(mutex_);
    return take_from_blocks();
  }

  void give_batch(const batch& b) noexcept {
    std::lock_guard lock(mutex_);
    if (depot_.size() < depot_batch_limit) {
      try {
        depot_.push_back(b);
        return;
      } catch (...) {  // out of memory: send the nodes home instead
      }
    }
    for (task_node* n : b) return_home(n);
  }

  void give_one(task_node* n) noexcept {
    std::lock_guard lock(mutex_);
    return_home(n);
  }

  std::mutex& mutex() noexcept { return mutex_; }

 private:
  // With mutex_ held. A node comes from the first block with nodes at home, or a new block.
  task_node* take_from_blocks() {
    if (with_nodes_home_ == nullptr) add_block();
    block* b = with_nodes_home_;
    if (--b->home == 0) unlink(b);
    if (b->returned > 0) return node_at_home(node_at(b, b->returned_indexes()[--b->returned]));  // empty already
    return fresh_header(node_at(b, b->carved++));
  }

  void add_block() {
    block* b = nullptr;
    if (!spare_blocks_.empty()) {
      b = spare_blocks_.back();
      spare_blocks_.pop_back();
    } else {
      b = ::new (static_cast<void*>(map_block())) block;
    }
    b->carved = 0;
    b->returned = 0;
    b->home = layout_.nodes;
    link(b);
  }

  // With mutex_ held. The node is empty (release_task_node) and stays as it is.
  void return_home(task_node* node) noexcept {
    auto* n = reinterpret_cast<std::byte*>(node);
    block* b = block_of(n);
    b->returned_indexes()[b->returned++] = static_cast<std::uint16_t>(
        static_cast<std::size_t>(n - reinterpret_cast<std::byte*>(b) - layout_.first_node) / node_bytes_);
    if (b->home++ == 0) link(b);
    if (b->home == layout_.nodes) {
      unlink(b);
      if (spare_blocks_.size() < spare_block_limit) {
        // Kept for the next burst: unmapped, it would come back as fresh pages, a fault and a
        // page of zeroing per 85 small nodes.
        try {
          spare_blocks_.push_back(b);
          return;
        } catch (...) {  // out of memory: unmap it instead
        }
      }
      b->~block();
      munmap(static_cast<void*>(b), block_bytes);
    }
  }

  [[nodiscard]] std::byte* node_at(block* b, std::size_t index) const noexcept {
    return reinterpret_cast<std::byte*>(b) + layout_.first_node + index * node_bytes_;
  }

  task_node* node_at_home(std::byte* n) const noexcept { return std::launder(reinterpret_cast<task_node*>(n)); }

  task_node* fresh_header(std::byte* n) const noexcept {
    task_node* node = ::new (static_cast<void*>(n)) task_node;
    node->flags = static_cast<std::uint8_t>(size_);
    return node;
  }

  static block* block_of(std::byte* n) noexcept {
    return reinterpret_cast<block*>(reinterpret_cast<std::uintptr_t>(n) & ~(std::uintptr_t{block_bytes} - 1));
  }

  void link(block* b) noexcept {
    b->prev = nullptr;
    b->next = with_nodes_home_;
    if (with_nodes_home_ != nullptr) with_nodes_home_->prev = b;
    with_nodes_home_ = b;
  }

  void unlink(block* b) noexcept {
    if (b->prev != nullptr) b->prev->next = b->next;
    if (b->next != nullptr) b->next->prev = b->prev;
    if (with_nodes_home_ == b) with_nodes_home_ = b->next;
    b->prev = b->next = nullptr;
  }

  const node_size size_;
  const std::size_t node_bytes_;
  const block_layout layout_;
  std::mutex mutex_;
  std::vector<batch> depot_;            // guarded by mutex_
  std::vector<block*> spare_blocks_;    // empty, mapped; guarded by mutex_
  block* with_nodes_home_ = nullptr;   // guarded by mutex_
};

// A thread that forks while another holds a class's mutex would leave it locked in the child.
void lock_classes() noexcept;
void unlock_classes() noexcept;

size_class& class_of(node_size size) noexcept {
  alignas(size_class) static std::byte storage[node_size_count][sizeof(size_class)];
  static size_class* const classes[node_size_count] = {
      ::new (static_cast<void*>(storage[0])) size_class(node_size::tiny),
      ::new (static_cast<void*>(storage[1])) size_class(node_size::small),
      ::new (static_cast<void*>(storage[2])) size_class(node_size::large),
  };
  static const bool fork_handlers = [] { return pthread_atfork(&lock_classes, &unlock_classes, &unlock_classes) == 0; }();
  static_cast<void>(fork_handlers);
  return *classes[static_cast<std::size_t>(size)];
}

void lock_classes() noexcept {
  for (std::size_t i = 0; i < node_size_count; ++i) class_of(static_cast<node_size>(i)).mutex().lock();
}
void unlock_classes() noexcept {
  for (std::size_t i = node_size_count; i-- > 0;) class_of(static_cast<node_size>(i)).mutex().unlock();
}

// Trivially destructible, so it can still be read after this_thread_caches is destroyed: a task
// handle held by a thread_local destroyed later must still be able to free its node.
thread_local bool this_thread_caches_destroyed = false;

struct thread_cache {
  std::array<task_node*, local_limit> nodes;
  std::size_t count = 0;

  // Moves the oldest batch to the depot (or home to its blocks).
  void give_back(size_class& to) noexcept {
    batch b;
    std::copy_n(nodes.begin(), batch_size, b.begin());
    std::copy(nodes.begin() + batch_size, nodes.begin() + static_cast<std::ptrdiff_t>(count), nodes.begin());
    count -= batch_size;
    to.give_batch(b);
  }

  void give_all_back(size_class& to) noexcept {
    while (count >= batch_size) give_back(to);
    for (std::size_t i = 0; i < count; ++i) to.give_one(nodes[i]);
    count = 0;
  }
};

struct thread_caches {
  std::array<thread_cache, node_size_count> by_size;
  ~thread_caches() {
    this_thread_caches_destroyed = true;
    for (std::size_t i = 0; i < node_size_count; ++i) by_size[i].give_all_back(class_of(static_cast<node_size>(i)));
  }
  thread_cache& of(node_size size) noexcept { return by_size[static_cast<std::size_t>(size)]; }
};

thread_local thread_caches this_thread_caches;

task_node* allocate_unpooled(node_size size) {
  task_node* node = nullptr;
  switch (size) {
    case node_size::tiny: node = new task_node_storage<node_bytes(node_size::tiny)>; break;
    case node_size::small: node = new task_node_storage<node_bytes(node_size::small)>; break;
    case node_size::large: node = new task_node_storage<node_bytes(node_size::large)>; break;
  }
  node->flags = static_cast<std::uint8_t>(size);
  return node;
}

void free_unpooled(task_node* node) noexcept {
  switch (node->size_class()) {
    case node_size::tiny: delete static_cast<task_node_storage<node_bytes(node_size::tiny)>*>(node); break;
    case node_size::small: delete static_cast<task_node_storage<node_bytes(node_size::small)>*>(node); break;
    case node_size::large: delete static_cast<task_node_storage<node_bytes(node_size::large)>*>(node); break;
  }
}

}  // namespace

task_node* allocate_task_node(node_size size) {
  // Under AddressSanitizer every node is a fresh allocation, so a use after release is reported
  // instead of hidden by recycling.
  if (address_sanitizer) return allocate_unpooled(size);
  if (this_thread_caches_destroyed) return class_of(size).take_one();
  thread_cache& cache = this_thread_caches.of(size);
  if (cache.count == 0) {
    class_of(size).take_batch(cache.nodes.data());
    cache.count = batch_size;
  }
  task_node* const node = cache.nodes[--cache.count];
  // The node handed out prefetch_distance calls from now was most likely last written by the
  // worker that ran its previous task (detail/prefetch.hpp).
  if (cache.count >= prefetch_distance) {
    const auto* ahead = reinterpret_cast<const std::byte*>(cache.nodes[cache.count - prefetch_distance]);
    prefetch_for_write(ahead);
    prefetch_for_write(ahead + node_bytes(size) - 1);  // a 48-byte node may span two lines
  }
  return node;
}

void free_task_node(task_node* node) noexcept {
  const node_size size = node->size_class();
  if (address_sanitizer) {
    free_unpooled(node);
    return;
  }
  if (this_thread_caches_destroyed) {
    class_of(size).give_one(node);
    return;
  }
  thread_cache& cache = this_thread_caches.of(size);
  if (cache.count == local_limit) cache.give_back(class_of(size));
  cache.nodes[cache.count++] = node;
}

void release_task_node(task_node* node) noexcept {
  // A count of 1 is ours alone (nobody else can add a reference), so the read-modify-write can
  // be skipped: the common case for go() tasks. acquire/acq_rel: the other holder's uses of the
  // node happen-before the reset below.
  if (node->refs.load(std::memory_order_acquire) != 1 && node->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) {
    return;
  }
  // Back to the empty state, writing only what is not empty already (see the cache's comment).
  if ((node->flags & flag_has_result) != 0) {
    node->ops(node, task_op::destroy_result);
    node->flags &= static_cast<std::uint8_t>(~flag_has_result);
  }
  if (node->has_error()) static_cast<void>(node->take_error());
  if (node->has_extras()) delete node->extras();
  if (node->state.load(std::memory_order_relaxed) != outcome_pending) {
    node->state.store(outcome_pending, std::memory_order_relaxed);
  }
  free_task_node(node);
}

void attach_task_extras(task_node* node, const submit_options* options, bool own_token,
                        const std::stop_token* also_stopped_by) {
  auto extras = std::make_unique<task_extras>();
  if (options != nullptr && options->deadline) extras->deadline = *options->deadline;
  std::stop_token given = options != nullptr ? options->stop_token : std::stop_token();
  if (own_token) {
    extras->own = std::stop_source();  // may throw std::bad_alloc
    // A token already stopped requests stop on ours at once, here.
    if (given.stop_possible()) extras->links[0].emplace(std::move(given), task_extras::forward_stop{&extras->own});
    if (also_stopped_by != nullptr && also_stopped_by->stop_possible()) {
      extras->links[1].emplace(*also_stopped_by, task_extras::forward_stop{&extras->own});
    }
  } else {
    extras->given = std::move(given);
  }
  task_extras* const raw = extras.release();
  std::memcpy(node->submit_time_slot(), &raw, sizeof raw);
  // relaxed: the node is not published yet; its publication releases this.
  node->state.store(node->state.load(std::memory_order_relaxed) | extras_bit, std::memory_order_relaxed);
}

void discard_task_node(task_node* node) noexcept {
  node->ops(node, task_op::cancel);
  node->refs.store(1, std::memory_order_relaxed);  // nobody else ever saw it
  release_task_node(node);
}

}  // namespace tidepool::detail
