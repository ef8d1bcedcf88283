"""The back office's words in templates: ``{% load backoffice %}``, then
``{{ value|money }}`` and ``{{ name|projection_name }}``."""

from django import template

from backoffice import money as money_
from backoffice import names

register = template.Library()

register.filter("money", money_.money)
register.filter("projection_name", names.projection_name)
