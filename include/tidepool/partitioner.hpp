#pragma once
// How parallel_for and parallel_reduce (fork_join.hpp, blocked_range2d.hpp) cut a range into
// pieces; passed as their last argument.
//
//   tidepool::parallel_for(pool, 0, n, f);                                    // auto: lazy splitting
//   tidepool::parallel_for(pool, 0, n, f, tidepool::static_partitioner{});    // even chunks
//   tidepool::parallel_for(pool, 0, n, f, tidepool::simple_partitioner{64});  // down to 64 indices
//
// auto_partitioner (the default) splits a range in two only while the worker's own deque is
// empty, i.e. while no half it offered earlier still waits for a thief; otherwise it runs one
// grain and looks again (lazy binary splitting). Good for uneven work and for nested loops.
// static_partitioner cuts the range into `chunks` pieces of equal size (±1 index) up front, and
// forks them in a balanced binary tree; nothing adapts (a 2-D range: strips of whole rows while
// there are enough rows). Best for even, memory-bound loops, where every extra piece costs a
// cache line shared between two workers and a fork.
// simple_partitioner splits every piece in two until it is at most `grain` indices.

#include <concepts>  // for std::same_as
#include <cstddef>   // for std::size_t

namespace tidepool {

struct auto_partitioner {
  // The most indices one piece runs before looking for a chance to split again
  // (0: about 8 pieces per worker if nobody steals).
  std::size_t grain = 0;
};

struct static_partitioner {
  // 0: four per worker (enough to absorb one worker being briefly busy elsewhere, few enough
  // that the cut lines cost nothing). At most the range's length; at most 2^31.
  std::size_t chunks = 0;
};

struct simple_partitioner {
  std::size_t grain = 1;  // 0 counts as 1
};

template <class P>
concept partitioner =
    std::same_as<P, auto_partitioner> || std::same_as<P, static_partitioner> || std::same_as<P, simple_partitioner>;

}  // namespace tidepool
