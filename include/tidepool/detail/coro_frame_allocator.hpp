#pragma once
// Where coroutine frames come from (co_task's promise_type operator new / delete).
//
// Frames are recycled through per-thread caches, one free list per size class (multiples of 64
// bytes up to max_cached_frame_bytes; bigger frames go to the global heap every time). Once a
// thread's cache is warm, making and finishing a co_task costs no call to the global heap.
//
// A frame is often freed on another thread than the one that allocated it (a child stolen by
// another worker finishes there). That is safe: every cached frame is one block of the global
// heap, owned by whichever cache holds it. A cache that grows past its limit hands a batch to a
// shared depot (under a mutex), from which an empty cache refills, so a producer/consumer pair of
// threads keeps recycling instead of one cache growing and the other allocating. At thread exit
// a cache goes back to the depot; what the depot has no room for goes back to the heap.
//
// Under AddressSanitizer every frame is a fresh heap block, so a use after free is reported
// instead of hidden by reuse (as for task nodes).

#include <cstddef>  // for std::size_t

namespace tidepool::detail {

inline constexpr std::size_t frame_size_granule = 64;
inline constexpr std::size_t max_cached_frame_bytes = 2048;

// Out of line on purpose: clang 14 may keep a thread-local's address computed before a
// co_await and use it after the coroutine resumed on another thread (fixed in LLVM 16 with
// llvm.threadlocal.address); inlined into a coroutine, these would then use another thread's
// cache. A call into another translation unit always looks again.
[[nodiscard]] void* allocate_frame(std::size_t bytes);  // throws std::bad_alloc
void free_frame(void* frame, std::size_t bytes) noexcept;

// A promise type deriving from this has its coroutine frames allocated here.
struct frame_allocated {
  static void* operator new(std::size_t bytes) { return allocate_frame(bytes); }
  static void operator delete(void* frame, std::size_t bytes) noexcept { free_frame(frame, bytes); }
};

}  // namespace tidepool::detail
