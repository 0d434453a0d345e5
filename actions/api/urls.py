"""Routes of the destinations and deliveries API (included under /api/v1/)."""

from rest_framework.routers import DefaultRouter

from .views import DeliveryViewSet, DestinationViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("destinations", DestinationViewSet, basename="destination")
router.register("deliveries", DeliveryViewSet, basename="delivery")

urlpatterns = router.urls
