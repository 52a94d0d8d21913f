// Bounded per-query top-k selection for the CPU kernels.
//
// Order: score descending, ties to the lower item id. Candidates go into a buffer of 2k
// slots; when it fills, nth_element keeps the best k and the k-th best becomes the
// threshold, so most later candidates are rejected by one compare (`admits`). Memory is
// O(k) per query, independent of the number of items.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace pyl2d {

struct Candidate {
  float score;
  int64_t id;
};

// a ranks strictly before b.
inline bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

class TopKBuffer {
 public:
  void reset(int64_t k) {
    k_ = k;
    buf_.clear();  // keeps its capacity: grows only as far as candidates are admitted
    thr_score_ = -std::numeric_limits<float>::infinity();
    thr_id_ = -1;  // nothing scoring -inf is ever admitted
  }

  // Cheap test: could (score, id) enter the current top-k?
  bool admits(float score, int64_t id) const {
    return score > thr_score_ || (score == thr_score_ && id < thr_id_);
  }

  float threshold() const { return thr_score_; }

  // Callers test admits() first.
  void push(float score, int64_t id) {
    buf_.push_back({score, id});
    if (static_cast<int64_t>(buf_.size()) >= 2 * k_) compact();
  }

  // Best-first results written to scores[0..k) and ids[0..k), padded with (-inf, -1).
  void write_sorted(float* scores, int64_t* ids) {
    const size_t keep = std::min(buf_.size(), static_cast<size_t>(k_));
    std::partial_sort(buf_.begin(), buf_.begin() + keep, buf_.end(), ranks_before);
    for (size_t i = 0; i < keep; ++i) {
      scores[i] = buf_[i].score;
      ids[i] = buf_[i].id;
    }
    for (int64_t i = static_cast<int64_t>(keep); i < k_; ++i) {
      scores[i] = -std::numeric_limits<float>::infinity();
      ids[i] = -1;
    }
  }

 private:
  void compact() {
    std::nth_element(buf_.begin(), buf_.begin() + (k_ - 1), buf_.end(), ranks_before);
    buf_.resize(static_cast<size_t>(k_));
    // The k-th best now sits at k-1 and every other kept entry ranks before it.
    thr_score_ = buf_[k_ - 1].score;
    thr_id_ = buf_[k_ - 1].id;
  }

  int64_t k_ = 1;
  std::vector<Candidate> buf_;
  float thr_score_ = -std::numeric_limits<float>::infinity();
  int64_t thr_id_ = -1;
};

}  // namespace pyl2d
