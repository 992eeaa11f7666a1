// kakunin/audit_merkle.hpp — the RFC 9162 (Certificate Transparency v2) Merkle tree over audit
// records: leaf and node hashes, an append-only tree, inclusion and consistency proofs and their
// verification. See docs/audit-format.md for the exact definitions an auditor re-implements.
//
//   kakunin::MerkleTree tree;
//   tree.append(kakunin::merkle_leaf_hash(canonical_bytes));
//   kakunin::MerkleHash root = tree.root();
//   auto proof = tree.inclusion_proof(3, tree.size());
//   bool ok = kakunin::verify_inclusion(3, tree.size(), tree.leaf(3), proof, root);
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kakunin {

/// A SHA-256 digest.
using MerkleHash = std::array<std::uint8_t, 32>;

/// SHA-256 over `size` bytes.
MerkleHash sha256(const void* data, std::size_t size);
inline MerkleHash sha256(std::string_view bytes) { return sha256(bytes.data(), bytes.size()); }

/// RFC 9162 §2.1.1 leaf hash: SHA-256(0x00 || data).
MerkleHash merkle_leaf_hash(const void* data, std::size_t size);
inline MerkleHash merkle_leaf_hash(std::string_view data) {
    return merkle_leaf_hash(data.data(), data.size());
}
/// RFC 9162 §2.1.1 interior node hash: SHA-256(0x01 || left || right).
MerkleHash merkle_node_hash(const MerkleHash& left, const MerkleHash& right);
/// The hash of the empty tree, SHA-256 of the empty string.
MerkleHash merkle_empty_root();

/// Lowercase hex of a digest, and its inverse (throws kakunin::Error invalid_input).
std::string to_hex(const MerkleHash& h);
MerkleHash merkle_hash_from_hex(std::string_view hex);

/// An append-only RFC 9162 Merkle tree that keeps every complete subtree hash (about two hashes
/// per leaf), so that appending costs O(1) amortised hashes and the root, an inclusion proof or a
/// consistency proof for any earlier size costs O(log n) hashes.
///
/// Threading: not synchronised; const members may run concurrently with each other only.
class MerkleTree {
public:
    MerkleTree() = default;

    std::uint64_t size() const noexcept { return m_levels.empty() ? 0 : m_levels[0].size(); }
    /// Reserves room for `leaves` leaves (optional; avoids reallocation while appending).
    void reserve(std::uint64_t leaves);
    /// Appends a leaf given its leaf hash (see merkle_leaf_hash).
    void append(const MerkleHash& leaf_hash);
    /// The leaf hash at `index`; throws kakunin::Error (invalid_input) when out of range.
    const MerkleHash& leaf(std::uint64_t index) const;

    /// Merkle Tree Hash of the current tree.
    MerkleHash root() const { return root(size()); }
    /// Merkle Tree Hash of the first `tree_size` leaves (tree_size <= size()).
    MerkleHash root(std::uint64_t tree_size) const;

    /// RFC 9162 §2.1.3.1 PATH(index, D[tree_size]); requires index < tree_size <= size().
    std::vector<MerkleHash> inclusion_proof(std::uint64_t index, std::uint64_t tree_size) const;
    /// RFC 9162 §2.1.4.1 PROOF(size1, D[size2]); requires size1 <= size2 <= size(). Empty when
    /// size1 is 0 or equals size2.
    std::vector<MerkleHash> consistency_proof(std::uint64_t size1, std::uint64_t size2) const;

private:
    MerkleHash range_hash(std::uint64_t begin, std::uint64_t end) const;
    void path(std::uint64_t index, std::uint64_t begin, std::uint64_t end,
              std::vector<MerkleHash>& out) const;
    void subproof(std::uint64_t m, std::uint64_t begin, std::uint64_t end, bool complete,
                  std::vector<MerkleHash>& out) const;

    // m_levels[k][i] is the hash of the complete subtree of 2^k leaves starting at leaf i * 2^k.
    std::vector<std::vector<MerkleHash>> m_levels;
};

/// The right edge of an RFC 9162 tree: one hash per complete subtree (at most 64), enough to
/// append and to compute the current root in O(log n) time and memory. What a long-running
/// writer keeps; proofs need the full MerkleTree.
class MerkleFrontier {
public:
    std::uint64_t size() const noexcept { return m_size; }
    void append(const MerkleHash& leaf_hash);
    /// Merkle Tree Hash of all leaves appended so far.
    MerkleHash root() const;

private:
    std::uint64_t m_size = 0;
    // m_subtrees[i] is the root of a complete subtree, largest first; their sizes are the set
    // bits of m_size from the highest down.
    std::vector<MerkleHash> m_subtrees;
};

/// RFC 9162 §2.1.3.2: the root implied by an inclusion proof, or false when the proof has the
/// wrong length for (index, tree_size) or index >= tree_size.
bool merkle_root_from_inclusion(std::uint64_t index, std::uint64_t tree_size,
                                const MerkleHash& leaf_hash, const std::vector<MerkleHash>& proof,
                                MerkleHash& root_out);
/// RFC 9162 §2.1.3.2: true when `proof` shows that `leaf_hash` is leaf `index` of the tree of
/// size `tree_size` with root `root`.
bool verify_inclusion(std::uint64_t index, std::uint64_t tree_size, const MerkleHash& leaf_hash,
                      const std::vector<MerkleHash>& proof, const MerkleHash& root);
/// RFC 9162 §2.1.4.2: true when `proof` shows that the tree of size `size2` with root `root2`
/// extends the tree of size `size1` with root `root1`. Sizes 0 and equal sizes are handled as
/// RFC 9162 describes (empty proof; equal roots when the sizes are equal).
bool verify_consistency(std::uint64_t size1, std::uint64_t size2, const MerkleHash& root1,
                        const MerkleHash& root2, const std::vector<MerkleHash>& proof);

}  // namespace kakunin
