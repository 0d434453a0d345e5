"""Routes of the trigger management API (included under /api/v1/)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from .views import AgentFollowView, TriggerDeliveriesView, TriggerViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("triggers", TriggerViewSet, basename="trigger")

urlpatterns = [
    path("triggers/<int:pk>/deliveries/", TriggerDeliveriesView.as_view(), name="trigger-deliveries"),
    path("agents/<str:agent>/follow/", AgentFollowView.as_view(), name="agent-follow"),
    *router.urls,
]
