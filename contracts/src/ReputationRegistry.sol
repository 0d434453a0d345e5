// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @dev The slice of the identity registry this contract needs.
interface IIdentityRegistryView {
    function ownerOf(uint256 agentId) external view returns (address);
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool);
}

/// @title ERC-8004 Reputation Registry (devnet build, contracts 2.0.0 semantics)
/// @notice Non-upgradeable re-implementation of the official v1 Reputation Registry for the devnet. The event
/// set equals the official ABI's; `Initialized` and `Upgraded` are declared for parity and never emitted.
/// @dev Semantics indexers rely on: feedbackIndex is 1-based per (agentId, client); revocation only flips a
/// flag; responses are permissionless, repeatable and allowed on revoked feedback; endpoint, feedbackURI and
/// feedbackHash exist only in the NewFeedback log.
contract ReputationRegistry is Ownable {
    struct Feedback {
        int128 value;
        uint8 valueDecimals;
        bool isRevoked;
        string tag1;
        string tag2;
    }

    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint64 feedbackIndex,
        int128 value,
        uint8 valueDecimals,
        string indexed indexedTag1,
        string tag1,
        string tag2,
        string endpoint,
        string feedbackURI,
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
    /// @dev Declared for ABI parity with the official proxy; never emitted.
    event Initialized(uint64 version);
    /// @dev Declared for ABI parity with the official proxy; never emitted.
    event Upgraded(address indexed implementation);

    uint8 private constant _MAX_DECIMALS = 18;
    /// @dev |value| ≤ 1e38 keeps the 18-decimal (WAD) scaling in getSummary inside int256 for any count.
    int128 private constant _MAX_ABS_VALUE = 1e38;

    IIdentityRegistryView private immutable _identityRegistry;

    mapping(uint256 => mapping(address => mapping(uint64 => Feedback))) private _feedback;
    mapping(uint256 => mapping(address => uint64)) private _lastIndex;
    mapping(uint256 => mapping(address => mapping(uint64 => mapping(address => uint64)))) private _responseCount;
    mapping(uint256 => mapping(address => mapping(uint64 => address[]))) private _responders;
    mapping(uint256 => mapping(address => mapping(uint64 => mapping(address => bool)))) private _responderExists;
    mapping(uint256 => address[]) private _clients;
    mapping(uint256 => mapping(address => bool)) private _clientExists;

    constructor(address identityRegistry_) Ownable(msg.sender) {
        require(identityRegistry_ != address(0), "bad identity");
        _identityRegistry = IIdentityRegistryView(identityRegistry_);
    }

    function getIdentityRegistry() external view returns (address) {
        return address(_identityRegistry);
    }

    function giveFeedback(
        uint256 agentId,
        int128 value,
        uint8 valueDecimals,
        string calldata tag1,
        string calldata tag2,
        string calldata endpoint,
        string calldata feedbackURI,
        bytes32 feedbackHash
    ) external {
        require(valueDecimals <= _MAX_DECIMALS, "too many decimals");
        require(value <= _MAX_ABS_VALUE && value >= -_MAX_ABS_VALUE, "value too large");
        _requireNotSelf(agentId);

        uint64 feedbackIndex = ++_lastIndex[agentId][msg.sender];
        _feedback[agentId][msg.sender][feedbackIndex] =
            Feedback({value: value, valueDecimals: valueDecimals, isRevoked: false, tag1: tag1, tag2: tag2});
        if (!_clientExists[agentId][msg.sender]) {
            _clientExists[agentId][msg.sender] = true;
            _clients[agentId].push(msg.sender);
        }
        emit NewFeedback(
            agentId, msg.sender, feedbackIndex, value, valueDecimals, tag1, tag1, tag2, endpoint, feedbackURI, feedbackHash
        );
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
        string calldata responseURI,
        bytes32 responseHash
    ) external {
        require(bytes(responseURI).length > 0, "empty URI");
        require(feedbackIndex > 0, "index must be > 0");
        require(feedbackIndex <= _lastIndex[agentId][clientAddress], "index out of bounds");
        if (!_responderExists[agentId][clientAddress][feedbackIndex][msg.sender]) {
            _responderExists[agentId][clientAddress][feedbackIndex][msg.sender] = true;
            _responders[agentId][clientAddress][feedbackIndex].push(msg.sender);
        }
        _responseCount[agentId][clientAddress][feedbackIndex][msg.sender]++;
        emit ResponseAppended(agentId, clientAddress, feedbackIndex, msg.sender, responseURI, responseHash);
    }

    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return _lastIndex[agentId][clientAddress];
    }

    function readFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex)
        external
        view
        returns (int128 value, uint8 valueDecimals, string memory tag1, string memory tag2, bool isRevoked)
    {
        require(feedbackIndex > 0, "index must be > 0");
        require(feedbackIndex <= _lastIndex[agentId][clientAddress], "index out of bounds");
        Feedback storage fb = _feedback[agentId][clientAddress][feedbackIndex];
        return (fb.value, fb.valueDecimals, fb.tag1, fb.tag2, fb.isRevoked);
    }

    /// @notice Count and average of the non-revoked feedback of the given clients (required: the caller chooses
    /// whose opinion counts, the Sybil guard of the spec). Empty tags match any. Each value is scaled to 18
    /// decimals, the sum divided by the count (integer division), and the result expressed in the most frequent
    /// valueDecimals (a tie goes to the smaller decimals).
    function getSummary(uint256 agentId, address[] calldata clientAddresses, string calldata tag1, string calldata tag2)
        external
        view
        returns (uint64 count, int128 summaryValue, uint8 summaryValueDecimals)
    {
        require(clientAddresses.length > 0, "clientAddresses required");
        bytes32 tag1Hash = keccak256(bytes(tag1));
        bytes32 tag2Hash = keccak256(bytes(tag2));
        bool anyTag1 = bytes(tag1).length == 0;
        bool anyTag2 = bytes(tag2).length == 0;

        uint64[19] memory decimalCounts;
        int256 wadSum;
        for (uint256 i = 0; i < clientAddresses.length; i++) {
            address client = clientAddresses[i];
            uint64 last = _lastIndex[agentId][client];
            for (uint64 j = 1; j <= last; j++) {
                Feedback storage fb = _feedback[agentId][client][j];
                if (fb.isRevoked) continue;
                if (!anyTag1 && keccak256(bytes(fb.tag1)) != tag1Hash) continue;
                if (!anyTag2 && keccak256(bytes(fb.tag2)) != tag2Hash) continue;
                wadSum += int256(fb.value) * int256(10 ** uint256(_MAX_DECIMALS - fb.valueDecimals));
                decimalCounts[fb.valueDecimals]++;
                count++;
            }
        }
        if (count == 0) {
            return (0, 0, 0);
        }
        uint64 best;
        for (uint8 d = 0; d <= _MAX_DECIMALS; d++) {
            if (decimalCounts[d] > best) {
                best = decimalCounts[d];
                summaryValueDecimals = d;
            }
        }
        int256 avgWad = wadSum / int256(uint256(count));
        summaryValue = int128(avgWad / int256(10 ** uint256(_MAX_DECIMALS - summaryValueDecimals)));
    }

    function readAllFeedback(
        uint256 agentId,
        address[] calldata clientAddresses,
        string calldata tag1,
        string calldata tag2,
        bool includeRevoked
    )
        external
        view
        returns (
            address[] memory clients,
            uint64[] memory feedbackIndexes,
            int128[] memory values,
            uint8[] memory valueDecimals,
            string[] memory tag1s,
            string[] memory tag2s,
            bool[] memory revokedStatuses
        )
    {
        address[] memory clientList = _clients[agentId];
        if (clientAddresses.length > 0) {
            clientList = clientAddresses;
        }
        uint256 total = _countMatching(agentId, clientList, tag1, tag2, includeRevoked);
        clients = new address[](total);
        feedbackIndexes = new uint64[](total);
        values = new int128[](total);
        valueDecimals = new uint8[](total);
        tag1s = new string[](total);
        tag2s = new string[](total);
        revokedStatuses = new bool[](total);

        uint256 n;
        for (uint256 i = 0; i < clientList.length; i++) {
            uint64 last = _lastIndex[agentId][clientList[i]];
            for (uint64 j = 1; j <= last; j++) {
                Feedback storage fb = _feedback[agentId][clientList[i]][j];
                if (!_matches(fb, tag1, tag2, includeRevoked)) continue;
                clients[n] = clientList[i];
                feedbackIndexes[n] = j;
                values[n] = fb.value;
                valueDecimals[n] = fb.valueDecimals;
                tag1s[n] = fb.tag1;
                tag2s[n] = fb.tag2;
                revokedStatuses[n] = fb.isRevoked;
                n++;
            }
        }
    }

    /// @notice Responses counted per the spec: clientAddress 0 = all clients, feedbackIndex 0 = all of the
    /// client's feedback, no responders = every responder.
    function getResponseCount(
        uint256 agentId,
        address clientAddress,
        uint64 feedbackIndex,
        address[] calldata responders
    ) external view returns (uint64 count) {
        if (clientAddress == address(0)) {
            address[] storage all = _clients[agentId];
            for (uint256 i = 0; i < all.length; i++) {
                count += _countClientResponses(agentId, all[i], responders);
            }
        } else if (feedbackIndex == 0) {
            count = _countClientResponses(agentId, clientAddress, responders);
        } else {
            count = _countResponses(agentId, clientAddress, feedbackIndex, responders);
        }
    }

    function getClients(uint256 agentId) external view returns (address[] memory) {
        return _clients[agentId];
    }

    function getVersion() external pure returns (string memory) {
        return "2.0.0";
    }

    function _requireNotSelf(uint256 agentId) private view {
        // ownerOf reverts for a missing agent; turn that into a readable reason.
        try _identityRegistry.ownerOf(agentId) returns (address) {}
        catch {
            revert("agent not found");
        }
        require(!_identityRegistry.isAuthorizedOrOwner(msg.sender, agentId), "self-feedback not allowed");
    }

    function _matches(Feedback storage fb, string calldata tag1, string calldata tag2, bool includeRevoked)
        private
        view
        returns (bool)
    {
        if (fb.isRevoked && !includeRevoked) return false;
        if (bytes(tag1).length > 0 && keccak256(bytes(fb.tag1)) != keccak256(bytes(tag1))) return false;
        if (bytes(tag2).length > 0 && keccak256(bytes(fb.tag2)) != keccak256(bytes(tag2))) return false;
        return true;
    }

    function _countMatching(
        uint256 agentId,
        address[] memory clientList,
        string calldata tag1,
        string calldata tag2,
        bool includeRevoked
    ) private view returns (uint256 total) {
        for (uint256 i = 0; i < clientList.length; i++) {
            uint64 last = _lastIndex[agentId][clientList[i]];
            for (uint64 j = 1; j <= last; j++) {
                if (_matches(_feedback[agentId][clientList[i]][j], tag1, tag2, includeRevoked)) total++;
            }
        }
    }

    function _countClientResponses(uint256 agentId, address client, address[] calldata responders)
        private
        view
        returns (uint64 count)
    {
        uint64 last = _lastIndex[agentId][client];
        for (uint64 j = 1; j <= last; j++) {
            count += _countResponses(agentId, client, j, responders);
        }
    }

    function _countResponses(uint256 agentId, address client, uint64 feedbackIndex, address[] calldata responders)
        private
        view
        returns (uint64 count)
    {
        if (responders.length == 0) {
            address[] storage all = _responders[agentId][client][feedbackIndex];
            for (uint256 k = 0; k < all.length; k++) {
                count += _responseCount[agentId][client][feedbackIndex][all[k]];
            }
        } else {
            for (uint256 k = 0; k < responders.length; k++) {
                count += _responseCount[agentId][client][feedbackIndex][responders[k]];
            }
        }
    }
}
