package main

import (
	"net/http"

	"k8s.io/client-go/rest"
)

func rest_http(cfg *rest.Config) (*http.Client, error) { return rest.HTTPClientFor(cfg) }
