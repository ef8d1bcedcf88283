from django.urls import path

from shop.accounts.apis import LogoutAllApi, LogoutApi, TokenObtainApi, UserRegisterApi

urlpatterns = [
    path("register/", UserRegisterApi.as_view(), name="auth-register"),
    path("token/", TokenObtainApi.as_view(), name="auth-token"),
    path("logout/", LogoutApi.as_view(), name="auth-logout"),
    path("logout-all/", LogoutAllApi.as_view(), name="auth-logout-all"),
]
