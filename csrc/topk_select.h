// Bounded per-query top-k selection for the CPU kernels.
//
// Order: score descending, ties to the lower item id. Each candidate is one 64-bit rank
// key (the score's order-preserving bits, inverted, above the 32-bit id), so "ranks
// before" is one unsigned compare. Candidates go into a buffer of 2k keys; when it fills,
// a radix select finds the k-th best, a branchless pass keeps the best k and the k-th best
// becomes the admission threshold, so most later candidates are rejected by one float
// compare. The final k are put in order by an LSD radix sort. (std::nth_element and
// std::sort on random keys mispredict about every other branch: 16 ns a key here, against
// about 2.) The cost grows with the number of admitted candidates (about k (1 + ln(N / k))
// on random data), not with k times N; memory is O(k) per query, plus a thread-local radix
// scratch as large as the largest 2k seen. Buffers of several workers for one query merge
// with absorb().
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

namespace radix {

// Thread-local scratch for the radix passes (reused across calls, sized by the largest k).
inline std::vector<uint64_t>& scratch(size_t n) {
  static thread_local std::vector<uint64_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

// The k-th smallest (1 <= k <= n) of n distinct keys: MSD select on bytes, narrowing to the
// keys of the byte that holds rank k; small remainders go to nth_element.
inline uint64_t kth_smallest(const uint64_t* keys, size_t n, size_t k) {
  constexpr size_t kSmall = 32;
  std::vector<uint64_t>& buf = scratch(n);
  const uint64_t* cur = keys;
  size_t m = n;
  for (int shift = 56; shift >= 0; shift -= 8) {
    if (m <= kSmall) break;
    uint32_t hist[256] = {0};
    for (size_t i = 0; i < m; ++i) ++hist[(cur[i] >> shift) & 255u];
    size_t d = 0;
    while (hist[d] < k) k -= hist[d++];
    if (hist[d] == m) continue;  // every key shares this byte: nothing to narrow
    size_t w = 0;
    for (size_t i = 0; i < m; ++i) {  // w <= i, so narrowing buf in place is safe
      const uint64_t v = cur[i];
      buf[w] = v;
      w += ((v >> shift) & 255u) == d;
    }
    cur = buf.data();
    m = w;
  }
  if (cur != buf.data()) {
    std::copy(cur, cur + m, buf.begin());
    cur = buf.data();
  }
  std::nth_element(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(k - 1), buf.begin() + static_cast<std::ptrdiff_t>(m));
  return buf[k - 1];
}

// Sorts keys[0..n) ascending: LSD radix on bytes, skipping bytes all keys share.
inline void sort(uint64_t* keys, size_t n) {
  if (n < 128) {
    std::sort(keys, keys + n);
    return;
  }
  uint32_t hist[8][256] = {};
  for (size_t i = 0; i < n; ++i)
    for (int b = 0; b < 8; ++b) ++hist[b][(keys[i] >> (8 * b)) & 255u];
  std::vector<uint64_t>& buf = scratch(n);
  uint64_t* src = keys;
  uint64_t* dst = buf.data();
  for (int b = 0; b < 8; ++b) {
    const uint64_t first = (src[0] >> (8 * b)) & 255u;
    if (hist[b][first] == n) continue;
    uint32_t offset[256];
    uint32_t sum = 0;
    for (int d = 0; d < 256; ++d) {
      offset[d] = sum;
      sum += hist[b][d];
    }
    for (size_t i = 0; i < n; ++i) dst[offset[(src[i] >> (8 * b)) & 255u]++] = src[i];
    std::swap(src, dst);
  }
  if (src != keys) std::copy(src, src + n, keys);
}

}  // namespace radix

class TopKBuffer {
 public:
  void reset(int64_t k) {
    k_ = k;
    n_ = 0;  // keys_ keeps its storage: sized on first use, to 2k keys
    seen_ = 0;
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

  // Whether offer() beats skipping ahead to the next admissible score: while a large k has
  // seen few items, a third or more of the scores get in and a branch per score would
  // mispredict about every other time.
  bool dense() const { return k_ >= kDenseMinK && seen_ < kDenseItemsPerK * k_; }

  // Scores s[j * stride] for ids id0 + j, j < n (a query without exclusions): every key is
  // written and the write position advances only for those that rank before the
  // threshold, so there is no branch per score.
  void offer(const float* s, int64_t stride, int64_t n, int64_t id0) {
    ensure_storage();
    const int64_t cap = 2 * k_;
    for (int64_t j = 0; j < n;) {
      const int64_t end = std::min(n, j + (cap - n_));
      uint64_t* out = keys_.data();
      int64_t w = n_;
      const uint64_t thr = thr_key_;
      for (; j < end; ++j) {
        const float v = s[j * stride];
        const uint64_t key = rank_key(v, id0 + j);
        out[w] = key;
        w += (key < thr) & (v == v);  // v == v: NaN never gets in
      }
      n_ = w;
      if (n_ == cap) compact();
    }
    seen_ += n;
  }

  // Counts items the caller scanned itself (admits/push), for dense().
  void saw(int64_t n) { seen_ += n; }

  // Adds the candidates another buffer of the same query kept (disjoint ids).
  void absorb(const TopKBuffer& other) {
    for (int64_t i = 0; i < other.n_; ++i)
      if (other.keys_[i] < thr_key_) push_key(other.keys_[i]);
  }

  // Best-first results written to scores[0..k) and ids[0..k), padded with (-inf, -1).
  void write_sorted(float* scores, int64_t* ids) {
    if (n_ > k_) compact();
    radix::sort(keys_.data(), static_cast<size_t>(n_));
    for (int64_t i = 0; i < n_; ++i) {
      scores[i] = key_score(keys_[i]);
      ids[i] = key_id(keys_[i]);
    }
    for (int64_t i = n_; i < k_; ++i) {
      scores[i] = -std::numeric_limits<float>::infinity();
      ids[i] = -1;
    }
  }

 private:
  static constexpr int64_t kDenseMinK = 64;
  static constexpr int64_t kDenseItemsPerK = 16;

  void ensure_storage() {
    if (static_cast<int64_t>(keys_.size()) < 2 * k_) keys_.resize(static_cast<size_t>(2 * k_));
  }

  void push_key(uint64_t key) {
    ensure_storage();
    keys_[n_++] = key;
    if (n_ == 2 * k_) compact();
  }

  void compact() {
    const uint64_t kth = radix::kth_smallest(keys_.data(), static_cast<size_t>(n_), static_cast<size_t>(k_));
    int64_t w = 0;
    for (int64_t i = 0; i < n_; ++i) {  // keys are distinct: exactly k are <= the k-th
      const uint64_t key = keys_[i];
      keys_[w] = key;
      w += key <= kth;
    }
    n_ = w;
    thr_key_ = kth;  // the k-th best; every other kept key is smaller
    thr_ = key_score(thr_key_);
  }

  int64_t k_ = 1;
  int64_t n_ = 0;     // keys held: keys_[0..n_)
  int64_t seen_ = 0;  // items offered so far
  std::vector<uint64_t> keys_;
  float thr_ = -std::numeric_limits<float>::infinity();
  uint64_t thr_key_ = 0;
};

}  // namespace pyl2d
