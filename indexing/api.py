"""Public read API of the indexing room: ``/api/v1/chains/`` — per configured chain,
how far indexing got (head, indexed block, lag in blocks and seconds), the last error,
and the registry contracts indexed there."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from erc8004.api import PublicReadMixin, error_responses

from .models import ContractDeployment
from .selectors import chain_overview_list

__all__ = ("ChainDetailApi", "ChainListApi")


class DeploymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContractDeployment
        fields = ("registry", "address", "abi_version", "identity_address", "start_block", "enabled", "label")
        read_only_fields = fields


class ChainSerializer(serializers.Serializer):
    chain_id = serializers.IntegerField(source="status.chain_id")
    name = serializers.CharField(source="status.name")
    enabled = serializers.BooleanField(source="status.enabled")
    head_block = serializers.IntegerField(source="status.head_block", allow_null=True, help_text="Node head seen")
    indexed_block = serializers.IntegerField(source="status.indexed_block", allow_null=True)
    lag_blocks = serializers.IntegerField(source="status.lag_blocks", allow_null=True)
    lag_seconds = serializers.FloatField(
        source="status.lag_seconds", allow_null=True, help_text="0 when within confirmations of the head"
    )
    last_success_at = serializers.DateTimeField(source="status.last_success_at", allow_null=True)
    last_error = serializers.CharField(source="status.last_error")
    last_error_at = serializers.DateTimeField(source="status.last_error_at", allow_null=True)
    reorg_count = serializers.IntegerField(source="status.reorg_count")
    unknown_log_count = serializers.IntegerField(source="status.unknown_log_count")
    deployments = DeploymentSerializer(many=True)


class ChainListApi(PublicReadMixin, GenericAPIView):
    """Every configured chain (enabled or not) with its indexing state. Not paginated:
    one row per chain."""

    serializer_class = ChainSerializer
    pagination_class = None
    filter_backends = ()

    @extend_schema(
        parameters=[OpenApiParameter("enabled", OpenApiTypes.BOOL, description="Only enabled (or disabled) chains")],
        responses={200: ChainSerializer(many=True), **error_responses(400, 429)},
    )
    def get(self, request: Request) -> Response:
        chains = chain_overview_list()
        enabled = request.query_params.get("enabled")
        if enabled is not None:
            if enabled.lower() not in ("true", "false", "1", "0"):
                raise exceptions.ValidationError({"enabled": ["Must be true or false."]})
            wanted = enabled.lower() in ("true", "1")
            chains = [c for c in chains if c.status.enabled == wanted]
        return Response(self.get_serializer(chains, many=True).data)


class ChainDetailApi(PublicReadMixin, GenericAPIView):
    serializer_class = ChainSerializer
    pagination_class = None
    filter_backends = ()

    @extend_schema(responses={200: ChainSerializer, **error_responses(404, 429)})
    def get(self, request: Request, chain_id: int) -> Response:
        chains = chain_overview_list(chain_id=chain_id)
        if not chains:
            raise exceptions.NotFound(f"No chain {chain_id}.")
        return Response(self.get_serializer(chains[0]).data)
