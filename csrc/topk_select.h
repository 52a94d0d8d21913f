// Bounded per-query top-k selection for the CPU kernels.
//
// Order: score descending, ties to the lower item id. Each candidate is one 64-bit rank
// key (the score's order-preserving bits, inverted, above the 32-bit id), so "ranks
// before" is one unsigned compare and partial selection is std::nth_element on plain
// integers. Candidates go into a buffer of 2k keys; when it fills, nth_element keeps the
// best k and the k-th best becomes the admission threshold, so most later candidates are
// rejected by one float compare. The cost grows with the number of admitted candidates
// (about k (1 + ln(N / k)) on random data), not with k times N; memory is O(k) per query.
// Buffers of several workers for one query merge with absorb().
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace pyl2d {

// Largest id a rank key holds: a call scores at most this many items.
constexpr int64_t kMaxRankedId = 0xFFFFFFFFll;

// A float's bits mapped so that unsigned order is float order (-0 reads as +0, so equal
// scores always tie by id).
inline uint32_t ordered_bits(float s) {
  s += 0.0f;  // -0 + 0 = +0 under IEEE rounding
  uint32_t u;
  std::memcpy(&u, &s, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

inline float from_ordered_bits(uint32_t o) {
  const uint32_t u = (o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o;
  float s;
  std::memcpy(&s, &u, sizeof s);
  return s;
}

// Smaller key = ranks first: (score desc, id asc).
inline uint64_t rank_key(float score, int64_t id) {
  return (static_cast<uint64_t>(~ordered_bits(score)) << 32) | static_cast<uint32_t>(id);
}
inline float key_score(uint64_t key) { return from_ordered_bits(~static_cast<uint32_t>(key >> 32)); }
inline int64_t key_id(uint64_t key) { return static_cast<int64_t>(key & 0xFFFFFFFFu); }

class TopKBuffer {
 public:
  void reset(int64_t k) {
    k_ = k;
    keys_.clear();  // keeps its capacity: grows only as far as candidates are admitted
    thr_ = -std::numeric_limits<float>::infinity();
    thr_key_ = rank_key(thr_, 0);  // nothing scoring -inf (or NaN) is ever admitted
  }

  // The k-th best score so far (-inf until k candidates were kept): anything scoring
  // below it is rejected, so callers may skip such candidates without calling admits().
  float threshold() const { return thr_; }

  // Could (score, id) enter the current top-k? False for NaN.
  bool admits(float score, int64_t id) const {
    return score > thr_ || (score == thr_ && rank_key(score, id) < thr_key_);
  }

  // Callers test admits() first.
  void push(float score, int64_t id) { push_key(rank_key(score, id)); }

  // Adds the candidates another buffer of the same query kept (disjoint ids).
  void absorb(const TopKBuffer& other) {
    for (uint64_t key : other.keys_)
      if (key < thr_key_) push_key(key);
  }

  // Best-first results written to scores[0..k) and ids[0..k), padded with (-inf, -1).
  void write_sorted(float* scores, int64_t* ids) {
    if (static_cast<int64_t>(keys_.size()) > k_) compact();
    std::sort(keys_.begin(), keys_.end());
    const int64_t keep = static_cast<int64_t>(keys_.size());
    for (int64_t i = 0; i < keep; ++i) {
      scores[i] = key_score(keys_[i]);
      ids[i] = key_id(keys_[i]);
    }
    for (int64_t i = keep; i < k_; ++i) {
      scores[i] = -std::numeric_limits<float>::infinity();
      ids[i] = -1;
    }
  }

 private:
  void push_key(uint64_t key) {
    if (keys_.capacity() < static_cast<size_t>(2 * k_)) keys_.reserve(static_cast<size_t>(2 * k_));
    keys_.push_back(key);
    if (static_cast<int64_t>(keys_.size()) >= 2 * k_) compact();
  }

  void compact() {
    std::nth_element(keys_.begin(), keys_.begin() + (k_ - 1), keys_.end());
    keys_.resize(static_cast<size_t>(k_));
    thr_key_ = keys_[k_ - 1];  // the k-th best; every other kept key is smaller
    thr_ = key_score(thr_key_);
  }

  int64_t k_ = 1;
  std::vector<uint64_t> keys_;
  float thr_ = -std::numeric_limits<float>::infinity();
  uint64_t thr_key_ = 0;
};

}  // namespace pyl2d
