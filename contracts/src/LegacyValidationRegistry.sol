// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev The slice of the identity registry this contract needs.
interface IIdentityRegistryLegacyAuth {
    function isAuthorizedOrOwner(address spender, uint256 agentId) external view returns (bool);
}

/// @title Legacy (v0.4-shaped) Validation Registry for the devnet
/// @notice Emits the October-2025 (v0.4) shapes: ValidationRequest is identical to v1, ValidationResponse
/// carries a `bytes32 tag` (v1: string). Uses the SAME v1 IdentityRegistry as the v1 registries. Rules are
/// otherwise those of v1: globally unique requestHash, only the requested validator responds, response ≤ 100,
/// repeated responses overwrite, 0 is a valid response.
contract LegacyValidationRegistry {
    struct ValidationStatus {
        address validatorAddress;
        uint8 response;
        bool hasResponse;
        uint256 agentId;
        bytes32 responseHash;
        bytes32 tag;
        uint256 lastUpdate;
    }

    /// @dev Byte-identical to v1 (same topic0 and parameter names).
    event ValidationRequest(
        address indexed validatorAddress, uint256 indexed agentId, string requestURI, bytes32 indexed requestHash
    );
    event ValidationResponse(
        address indexed validatorAddress,
        uint256 indexed agentId,
        bytes32 indexed requestHash,
        uint8 response,
        string responseUri,
        bytes32 responseHash,
        bytes32 tag
    );

    uint8 private constant _MAX_RESPONSE = 100;

    IIdentityRegistryLegacyAuth private immutable _identityRegistry;

    mapping(bytes32 => ValidationStatus) private _validations;
    mapping(uint256 => bytes32[]) private _agentValidations;
    mapping(address => bytes32[]) private _validatorRequests;

    constructor(address identityRegistry_) {
        require(identityRegistry_ != address(0), "bad identity");
        _identityRegistry = IIdentityRegistryLegacyAuth(identityRegistry_);
    }

    function getIdentityRegistry() external view returns (address) {
        return address(_identityRegistry);
    }

    function validationRequest(address validatorAddress, uint256 agentId, string calldata requestURI, bytes32 requestHash)
        external
    {
        require(validatorAddress != address(0), "bad validator");
        require(_identityRegistry.isAuthorizedOrOwner(msg.sender, agentId), "not authorized");
        ValidationStatus storage s = _validations[requestHash];
        require(s.validatorAddress == address(0), "exists");
        s.validatorAddress = validatorAddress;
        s.agentId = agentId;
        s.lastUpdate = block.timestamp;
        _agentValidations[agentId].push(requestHash);
        _validatorRequests[validatorAddress].push(requestHash);
        emit ValidationRequest(validatorAddress, agentId, requestURI, requestHash);
    }

    function validationResponse(
        bytes32 requestHash,
        uint8 response,
        string calldata responseUri,
        bytes32 responseHash,
        bytes32 tag
    ) external {
        ValidationStatus storage s = _validations[requestHash];
        require(s.validatorAddress != address(0), "unknown");
        require(msg.sender == s.validatorAddress, "not validator");
        require(response <= _MAX_RESPONSE, "response > 100");
        s.response = response;
        s.hasResponse = true;
        s.responseHash = responseHash;
        s.tag = tag;
        s.lastUpdate = block.timestamp;
        emit ValidationResponse(s.validatorAddress, s.agentId, requestHash, response, responseUri, responseHash, tag);
    }

    function getValidationStatus(bytes32 requestHash)
        external
        view
        returns (
            address validatorAddress,
            uint256 agentId,
            uint8 response,
            bytes32 responseHash,
            bytes32 tag,
            uint256 lastUpdate
        )
    {
        ValidationStatus storage s = _validations[requestHash];
        require(s.validatorAddress != address(0), "unknown");
        return (s.validatorAddress, s.agentId, s.response, s.responseHash, s.tag, s.lastUpdate);
    }

    function getSummary(uint256 agentId, address[] calldata validatorAddresses, bytes32 tag)
        external
        view
        returns (uint64 count, uint8 avgResponse)
    {
        bytes32[] storage hashes = _agentValidations[agentId];
        uint256 total;
        for (uint256 i = 0; i < hashes.length; i++) {
            ValidationStatus storage s = _validations[hashes[i]];
            if (!s.hasResponse) continue;
            if (tag != bytes32(0) && s.tag != tag) continue;
            if (validatorAddresses.length > 0 && !_contains(validatorAddresses, s.validatorAddress)) continue;
            total += s.response;
            count++;
        }
        avgResponse = count > 0 ? uint8(total / count) : 0;
    }

    function getAgentValidations(uint256 agentId) external view returns (bytes32[] memory) {
        return _agentValidations[agentId];
    }

    function getValidatorRequests(address validatorAddress) external view returns (bytes32[] memory) {
        return _validatorRequests[validatorAddress];
    }

    function getVersion() external pure returns (string memory) {
        return "1.0.0";
    }

    function _contains(address[] calldata list, address item) private pure returns (bool) {
        for (uint256 i = 0; i < list.length; i++) {
            if (list[i] == item) return true;
        }
        return false;
    }
}
