"""What the back office's pages share: read-only read-model admins, command forms built
from the API's own input serializers (one definition of each rule), and the one way a
page runs a command: call the same service as the API and turn a domain error into a
message.

The admin never writes a read-model table or an aggregate itself: a command goes
through its service (which saves events), and read models change only when the
projections catch up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from eventsourcing.persistence import IntegrityError
from rest_framework import serializers
from rest_framework.fields import SkipField, empty

from shop.errors import ApplicationError, ConcurrentUpdate, PreconditionFailed
from shop.eventstore import Saved
from shop.metadata import Actor, Context
from shop.request_id import request_id_of
from shop.unit_of_work import UnitOfWork

COMMAND_FORM_TEMPLATE = "admin/shop/command_form.html"
# The hidden field carrying the version of the aggregate the form was shown for.
VERSION_FIELD = "shown_version"


def is_staff(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff)


class ReadModelAdmin(admin.ModelAdmin):
    """A read model in the admin: listed and viewed by every staff member, never
    added, changed or deleted here (only its projector writes it).

    View access follows the API's rule for staff commands (``is_staff``), so a staff
    member needs no per-model permission to see the tables the commands act on.
    """

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_staff(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_staff(request)

    def url_name(self, view: str) -> str:
        opts = self.opts
        return f"{opts.app_label}_{opts.model_name}_{view}"

    def staff_view(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        """Wrap a custom view: admin login required, staff only."""

        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not self.has_view_permission(request):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return self.admin_site.admin_view(checked)


# --- command input: the API's own fields, as a form ----------------------------------


class ApiField(forms.Field):
    """A form field that validates through a field of an API input serializer, so the
    admin and the API share one definition of each rule (and its message)."""

    def __init__(self, api_field: serializers.Field, *, label: str | None = None) -> None:
        self.api_field = api_field
        widget: forms.Widget = forms.TextInput()
        if isinstance(api_field, serializers.ChoiceField):
            widget = forms.Select(choices=[("", "---------"), *api_field.choices.items()])
        elif isinstance(api_field, serializers.IntegerField | serializers.DecimalField):
            widget = forms.NumberInput(attrs={"step": "any"})
        super().__init__(
            required=api_field.required,
            widget=widget,
            label=label or api_field.label,
            help_text=api_field.help_text or "",
        )

    def clean(self, value: Any) -> Any:
        blank_allowed = getattr(self.api_field, "allow_blank", False)
        if value is None or (value == "" and not blank_allowed):
            value = empty  # an empty input is a missing value, as in a JSON body
        try:
            return self.api_field.run_validation(value)
        except SkipField:
            return None
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, list) else [exc.detail]
            raise forms.ValidationError([str(message) for message in detail]) from None


def api_form(
    serializer_class: type[serializers.Serializer],
    *,
    fields: Iterable[str] | None = None,
    labels: dict[str, str] | None = None,
) -> type[forms.Form]:
    """A form with ``fields`` (default: all) of a command's API input serializer."""
    api_fields = serializer_class().fields
    names = list(fields) if fields is not None else list(api_fields)
    attrs = {
        name: ApiField(api_fields[name], label=(labels or {}).get(name)) for name in names
    }
    return type(f"{serializer_class.__name__}Form", (forms.Form,), attrs)


# --- running a command ------------------------------------------------------------------


def admin_unit_of_work(request: HttpRequest, *, if_match: Any = None) -> UnitOfWork:
    """A unit of work for a command run from the back office: by the staff member
    signed in, via the admin (the metadata of its events)."""
    return UnitOfWork(context=Context(Actor.of(request.user), "admin", request_id_of(request)),
                      if_match=if_match)


def run_command(
    request: HttpRequest,
    command: Callable[[], Saved],
    *,
    done: str | Callable[[Saved], str],
    form: forms.Form | None = None,
    about: str = "",
    subject: str = "",
) -> Saved | None:
    """Run one command service; report the outcome as an admin message.

    On success: a success message saying what happened (``done``). A domain error (or
    a lost race the service did not retry) becomes an error message, and its field
    errors are attached to ``form``; nothing was appended to the log. ``about`` names
    what the command was for (e.g. "Order 10432"), before an error; ``subject`` names
    what a stale form was about ("Product MUG-1") when someone changed it meanwhile.
    """
    prefix = f"{about}: " if about else ""
    try:
        saved = command()
    except PreconditionFailed as exc:
        messages.error(request, f"{prefix}{stale(subject) if subject else exc.detail}")
        return None
    except ApplicationError as exc:
        messages.error(request, f"{prefix}{exc.detail}")
        if form is not None and exc.errors:
            for field, field_errors in exc.errors.items():
                for message in field_errors:
                    form.add_error(field if field in form.fields else None, message)
        return None
    except IntegrityError:
        messages.error(request, f"{prefix}{ConcurrentUpdate.default_detail}")
        return None
    text = done(saved) if callable(done) else done
    messages.success(request, f"{text}.")
    return saved


def stale(subject: str) -> str:
    """The refusal of a form shown before someone else changed what it is about."""
    return (f"{subject} changed since you read it: someone saved a change meanwhile. "
            "Nothing was saved; reload the page to see the change, then try again.")


def carry_version(form: forms.Form, version: int | None) -> forms.Form:
    """Give ``form`` the hidden field carrying the version it is shown for.

    A form that posts to a :func:`command_form_view` with ``edits`` (its own page, or
    one embedded in another page, such as the cancel form on the order page) renders
    this field, so the command runs under that precondition.
    """
    form.fields[VERSION_FIELD] = forms.IntegerField(
        widget=forms.HiddenInput, required=False, min_value=1, initial=version
    )
    return form


def command_form_view(
    model_admin: ReadModelAdmin,
    request: HttpRequest,
    *,
    form_class: type[forms.Form],
    title: str,
    run: Callable[..., Saved],
    done: str | Callable[[Saved], str],
    success_url: str | Callable[[Saved], str],
    submit_label: str,
    original: Any = None,
    initial: dict[str, Any] | None = None,
    intro: str = "",
    edits: tuple[Any, int | None] | None = None,
    subject: str = "",
) -> HttpResponse:
    """A page with one command's form: GET shows it; a valid POST runs the command
    through ``run(uow=<unit of work>, **cleaned_data)`` and redirects on success, or
    shows the form again with the domain error as a message.

    ``edits``: ``(aggregate_id, version shown)`` for a form about an existing
    aggregate. The version travels in a hidden field and the command runs under that
    precondition (as the API's If-Match): if someone changed the aggregate since the
    form was shown, nothing is saved and the page says so, instead of silently
    overwriting their change. ``subject`` names it in that refusal ("Product MUG-1").
    """
    form = form_class(request.POST if request.method == "POST" else None, initial=initial)
    if edits is not None:
        carry_version(form, edits[1])
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        shown = data.pop(VERSION_FIELD, None)
        uow = admin_unit_of_work(request, if_match=(edits[0], shown) if edits and shown else None)
        saved = run_command(request, lambda: run(uow=uow, **data), done=done, form=form,
                            subject=subject)
        if saved is not None:
            url = success_url(saved) if callable(success_url) else success_url
            return HttpResponseRedirect(url)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title,
        "form": form,
        "original": original,
        "submit_label": submit_label,
        "intro": intro,
    }
    return TemplateResponse(request, COMMAND_FORM_TEMPLATE, context)


def run_for_each(
    request: HttpRequest,
    items: Iterable[Any],
    command: Callable[[Any, UnitOfWork], Saved],
    *,
    done: Callable[[Any, Saved], str],
    about: Callable[[Any], str] = str,
) -> int:
    """An admin action: run ``command(row, uow)`` for each selected row, each in a unit
    of work of its own, one message per row (a failure starts with ``about(row)``,
    e.g. "Order 10432"). Returns how many succeeded."""
    succeeded = 0
    for item in items:
        if run_command(request,
                       lambda item=item: command(item, admin_unit_of_work(request)),
                       done=lambda saved, item=item: done(item, saved), about=about(item)):
            succeeded += 1
    return succeeded
