from django.urls import path

from shop.accounts.apis import (
    LogoutAllApi,
    LogoutApi,
    MeExportApi,
    MeForgetApi,
    TokenObtainApi,
    UserRegisterApi,
)

urlpatterns = [
    path("register/", UserRegisterApi.as_view(), name="auth-register"),
    path("token/", TokenObtainApi.as_view(), name="auth-token"),
    path("logout/", LogoutApi.as_view(), name="auth-logout"),
    path("logout-all/", LogoutAllApi.as_view(), name="auth-logout-all"),
    path("me/export/", MeExportApi.as_view(), name="auth-me-export"),
    path("me/forget/", MeForgetApi.as_view(), name="auth-me-forget"),
]
