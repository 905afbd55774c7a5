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
#include <new>      // for placement new

#include "tidepool/detail/sanitizers.hpp"

namespace tidepool::detail {

inline constexpr std::size_t frame_size_granule = 64;
inline constexpr std::size_t max_cached_frame_bytes = 2048;
inline constexpr std::size_t frame_class_count = max_cached_frame_bytes / frame_size_granule;

// A free frame's first bytes link it to the next free one of its list: a free frame is ours alone.
struct free_frame_link {
  free_frame_link* next;
};

// One size class of a thread's cache: the free frames, newest first.
struct frame_list {
  free_frame_link* head = nullptr;
  std::size_t count = 0;
};

// The calling thread's cache (lib/coro.cpp). Trivially destructible and constant-initialised, so
// the fast paths below reach it without a call; the slow paths (empty, too full, thread exit)
// are in lib/coro.cpp.
extern constinit thread_local frame_list this_thread_frames[frame_class_count];
// Set when the thread's cache has been handed back at its exit: from then on frames go to the heap.
extern constinit thread_local bool this_thread_frames_released;
inline constexpr std::size_t frames_kept_per_class = 256;

[[nodiscard]] void* allocate_frame_slow(std::size_t bytes);
void free_frame_slow(void* frame, std::size_t bytes) noexcept;

// Throws std::bad_alloc.
[[nodiscard]] inline void* allocate_frame(std::size_t bytes) {
  if (!address_sanitizer && bytes <= max_cached_frame_bytes) {
    frame_list& kept = this_thread_frames[(bytes - 1) / frame_size_granule];
    if (free_frame_link* frame = kept.head) {
      kept.head = frame->next;
      --kept.count;
      return frame;
    }
  }
  return allocate_frame_slow(bytes);
}

inline void free_frame(void* frame, std::size_t bytes) noexcept {
  if (!address_sanitizer && bytes <= max_cached_frame_bytes && !this_thread_frames_released) {
    frame_list& kept = this_thread_frames[(bytes - 1) / frame_size_granule];
    if (kept.count < frames_kept_per_class) {
      kept.head = ::new (frame) free_frame_link{kept.head};
      ++kept.count;
      return;
    }
  }
  free_frame_slow(frame, bytes);
}

// A promise type deriving from this has its coroutine frames allocated here.
struct frame_allocated {
  static void* operator new(std::size_t bytes) { return allocate_frame(bytes); }
  static void operator delete(void* frame, std::size_t bytes) noexcept { free_frame(frame, bytes); }
};

}  // namespace tidepool::detail
