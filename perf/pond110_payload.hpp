#pragma once
// Go pond's issue-110 payload, shared by bench_memory's pond110 workload and pond110_stalls: the
// 1 MiB that one round's tasks capture, touched so that it is resident as a real payload is, and
// counted in `live` while it exists.

#include <atomic>   // for std::atomic
#include <cstring>  // for std::memset
#include <vector>   // for std::vector

namespace tidepool::perf {

class pond110_payload {
 public:
  explicit pond110_payload(std::atomic<long>& live) : bytes(1 << 20), live_(live) {
    std::memset(bytes.data(), 1, bytes.size());
    live_.fetch_add(1);
  }
  ~pond110_payload() { live_.fetch_sub(1); }
  pond110_payload(const pond110_payload&) = delete;
  pond110_payload& operator=(const pond110_payload&) = delete;

  std::vector<unsigned char> bytes;  // every byte 1: a task reads 256 of them (1 MiB / 4096 strides)

 private:
  std::atomic<long>& live_;
};

}  // namespace tidepool::perf
