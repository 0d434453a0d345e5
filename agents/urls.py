"""Routes of the agents read API, mounted under /api/v1/ (erc8004/urls.py)."""

from django.urls import path

from .api import views

urlpatterns = [
    path("agents/", views.AgentListApi.as_view(), name="agent-list"),
    path("agents/<str:agent_ref>/", views.AgentDetailApi.as_view(), name="agent-detail"),
    path("agents/<str:agent_ref>/feedback/", views.AgentFeedbackListApi.as_view(), name="agent-feedback-list"),
    path("agents/<str:agent_ref>/validations/", views.AgentValidationListApi.as_view(), name="agent-validation-list"),
    path("feedback/", views.FeedbackListApi.as_view(), name="feedback-list"),
    path("feedback/<str:feedback_ref>/", views.FeedbackDetailApi.as_view(), name="feedback-detail"),
    path(
        "feedback/<str:feedback_ref>/responses/",
        views.FeedbackResponseListApi.as_view(),
        name="feedback-response-list",
    ),
    path("validations/", views.ValidationListApi.as_view(), name="validation-list"),
    path("validations/<str:validation_ref>/", views.ValidationDetailApi.as_view(), name="validation-detail"),
    path("events/", views.EventListApi.as_view(), name="event-list"),
]
