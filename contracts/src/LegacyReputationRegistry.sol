// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The slice of the identity registry this contract needs.
interface IIdentityRegistryLegacyView {
    function ownerOf(uint256 agentId) external view returns (address);
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool);
}

/// @title Legacy (v0.4-shaped) Reputation Registry for the devnet
/// @notice Emits the October-2025 (v0.4, contracts "1.0.0") event shapes that old testnet deployments still
/// carry, so the indexer's v0.4 decoder is exercised against a real chain. It uses the SAME v1
/// IdentityRegistry for agent existence and ownership as the v1 registries.
/// @dev Differences from v1 an indexer must handle:
///  - NewFeedback carries `uint8 score` (0-100) and bytes32 tags and has NO feedbackIndex: the per-client,
///    1-based index is kept in storage (getLastIndex/readFeedback) and must be counted by the indexer;
///  - FeedbackRevoked and ResponseAppended are byte-identical to v1;
///  - `feedbackAuth` (in v0.4 a signed pre-authorisation by the agent) is accepted but NOT verified here:
///    the devnet needs the v0.4 event shapes, not v0.4's authorisation scheme. Self-feedback by the owner or
///    an operator is still refused, as in v1.
contract LegacyReputationRegistry {
    struct Feedback {
        uint8 score;
        bool isRevoked;
        bytes32 tag1;
        bytes32 tag2;
    }

    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint8 score,
        bytes32 indexed tag1,
        bytes32 tag2,
        string feedbackUri,
        bytes32 feedbackHash
    );
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);
    event ResponseAppended(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        address indexed responder,
        string responseURI,
        bytes32 responseHash
    );

    uint8 private constant _MAX_SCORE = 100;

    IIdentityRegistryLegacyView private immutable _identityRegistry;

    mapping(uint256 => mapping(address => mapping(uint64 => Feedback))) private _feedback;
    mapping(uint256 => mapping(address => uint64)) private _lastIndex;
    mapping(uint256 => mapping(address => mapping(uint64 => uint64))) private _responseCount;
    mapping(uint256 => address[]) private _clients;
    mapping(uint256 => mapping(address => bool)) private _clientExists;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity");
        _identityRegistry = IIdentityRegistryLegacyView(identityRegistry_);
    }

    function getIdentityRegistry() external view returns (address) {
        return address(_identityRegistry);
    }

    /// @param feedbackAuth Accepted for ABI compatibility with v0.4 and ignored (see the contract notes).
    function giveFeedback(
        uint256 agentId,
        uint8 score,
        bytes32 tag1,
        bytes32 tag2,
        string calldata feedbackUri,
        bytes32 feedbackHash,
        bytes calldata feedbackAuth
    ) external {
        feedbackAuth; // deliberately unverified
        require(score <= _MAX_SCORE, "score>100");
        try _identityRegistry.ownerOf(agentId) returns (address) {}
        catch {
            revert("agent not found");
        }
        require(!_identityRegistry.isAuthorizedOrOwner(msg.sender, agentId), "self-feedback not allowed");

        uint64 feedbackIndex = ++_lastIndex[agentId][msg.sender];
        _feedback[agentId][msg.sender][feedbackIndex] = Feedback({score: score, isRevoked: false, tag1: tag1, tag2: tag2});
        if (!_clientExists[agentId][msg.sender]) {
            _clientExists[agentId][msg.sender] = true;
            _clients[agentId].push(msg.sender);
        }
        emit NewFeedback(agentId, msg.sender, score, tag1, tag2, feedbackUri, feedbackHash);
    }

    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        require(feedbackIndex > 0, "index must be > 0");
        require(feedbackIndex <= _lastIndex[agentId][msg.sender], "index out of bounds");
        Feedback storage fb = _feedback[agentId][msg.sender][feedbackIndex];
        require(!fb.isRevoked, "already revoked");
        fb.isRevoked = true;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    function appendResponse(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        string calldata responseUri,
        bytes32 responseHash
    ) external {
        require(bytes(responseUri).length > 0, "empty URI");
        require(feedbackIndex > 0, "index must be > 0");
        require(feedbackIndex <= _lastIndex[agentId][clientAddress], "index out of bounds");
        _responseCount[agentId][clientAddress][feedbackIndex]++;
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseUri, responseHash);
    }

    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return _lastIndex[agentId][clientAddress];
    }

    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (uint8 score, bytes32 tag1, bytes32 tag2, bool isRevoked)
    {
        require(feedbackIndex > 0, "index must be > 0");
        require(feedbackIndex <= _lastIndex[agentId][clientAddress], "index out of bounds");
        Feedback storage fb = _feedback[agentId][clientAddress][feedbackIndex];
        return (fb.score, fb.tag1, fb.tag2, fb.isRevoked);
    }

    /// @notice v0.4 summary: count and integer average score of non-revoked feedback; an empty client list
    /// means every client and a zero tag means any.
    function getSummary(uint256 agentId, address[] calldata clientAddresses, bytes32 tag1, bytes32 tag2)
        external
        view
        returns (uint64 count, uint8 averageScore)
    {
        address[] memory clientList = _clients[agentId];
        if (clientAddresses.length > 0) {
            clientList = clientAddresses;
        }
        uint256 total;
        for (uint256 i = 0; i < clientList.length; i++) {
            uint64 last = _lastIndex[agentId][clientList[i]];
            for (uint64 j = 1; j <= last; j++) {
                Feedback storage fb = _feedback[agentId][clientList[i]][j];
                if (fb.isRevoked) continue;
                if (tag1 != bytes32(0) && fb.tag1 != tag1) continue;
                if (tag2 != bytes32(0) && fb.tag2 != tag2) continue;
                total += fb.score;
                count++;
            }
        }
        averageScore = count > 0 ? uint8(total / count) : 0;
    }

    function getResponseCount(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (uint64)
    {
        return _responseCount[agentId][clientAddress][feedbackIndex];
    }

    function getClients(uint256 agentId) external view returns (address[] memory) {
        return _clients[agentId];
    }

    function getVersion() external pure returns (string memory) {
        return "1.0.0";
    }
}
