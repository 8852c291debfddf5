package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/eddy-streams/eddy/schema"
)

// defaultRegistryURL is where the schema commands look when neither
// --registry-url nor EDDY_REGISTRY_URL says otherwise.
const defaultRegistryURL = "http://localhost:8081"

func schemaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schema",
		Short: "Register, read, list and check schemas in a Confluent-compatible schema registry",
		Long: `Work with the schemas of a Confluent-compatible schema registry: eddy's
own (eddy registry, eddy demo), Confluent's, or Apicurio's ccompat API.
The registry is --registry-url, or EDDY_REGISTRY_URL, or ` + defaultRegistryURL + `.`,
		Args: cobra.NoArgs,
	}
	cmd.SetGlobalNormalizationFunc(normalizeFlag)
	addSettingDefault(cmd.PersistentFlags(), "registry-url", defaultRegistryURL)
	addSettingsTo(cmd.PersistentFlags(), registryAuthSettings...)
	cmd.AddCommand(schemaRegisterCmd(), schemaGetCmd(), schemaListCmd(), schemaCheckCmd())
	return cmd
}

func registryURL(cmd *cobra.Command) string {
	u, _ := cmd.Flags().GetString("registry-url")
	return strings.TrimRight(u, "/")
}

func readSchemaFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("--file is empty: name an Avro schema file (.avsc)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if _, err := schema.ParseSchema(string(b)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return string(b), nil
}

func requireSubject(cmd *cobra.Command) (string, error) {
	s, _ := cmd.Flags().GetString("subject")
	if s == "" {
		return "", errors.New("--subject is empty: name the subject, usually <topic>-value")
	}
	return s, nil
}

// subjectAndSchema reads --subject and the schema in --file.
func subjectAndSchema(cmd *cobra.Command) (subject, text string, err error) {
	if subject, err = requireSubject(cmd); err != nil {
		return "", "", err
	}
	file, _ := cmd.Flags().GetString("file")
	text, err = readSchemaFile(file)
	return subject, text, err
}

func schemaRegisterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "register --subject S --file schema.avsc",
		Short: "Register a schema under a subject (idempotent) and print its id and version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			subject, text, err := subjectAndSchema(cmd)
			if err != nil {
				return err
			}
			rc, err := openRegistry(cmd, registryURL(cmd))
			if err != nil {
				return err
			}
			defer rc.close()
			c := rc.client()
			id, err := c.Register(cmd.Context(), subject, text)
			if err != nil {
				return err
			}
			s, err := c.Lookup(cmd.Context(), subject, text)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered under %s: id %d, version %d\n", subject, id, s.Version)
			return nil
		},
	}
	cmd.Flags().String("subject", "", "Subject, usually <topic>-value")
	cmd.Flags().StringP("file", "f", "", "Avro schema file (.avsc)")
	return cmd
}

func schemaGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get --subject S [--version V|latest] | --id N",
		Short: "Print a schema: a version of a subject, or the schema with a global id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, _ := cmd.Flags().GetInt("id")
			subject, _ := cmd.Flags().GetString("subject")
			version, _ := cmd.Flags().GetString("version")
			out := cmd.OutOrStdout()
			rc, err := openRegistry(cmd, registryURL(cmd))
			if err != nil {
				return err
			}
			defer rc.close()
			switch {
			case id > 0 && subject != "":
				return errors.New("give --id or --subject, not both")
			case id > 0:
				s, err := rc.client().GetByID(cmd.Context(), id)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "# id %d\n%s\n", id, indentJSON(s.Text))
				return nil
			case subject == "":
				return errors.New("name a schema: --subject S [--version V], or --id N")
			}
			if version != "latest" {
				if _, err := strconv.Atoi(version); err != nil {
					return fmt.Errorf("--version %q: a version number or latest", version)
				}
			}
			var got struct {
				Subject string `json:"subject"`
				Version int    `json:"version"`
				ID      int    `json:"id"`
				Schema  string `json:"schema"`
			}
			if err := rc.call(cmd.Context(), http.MethodGet,
				"/subjects/"+url.PathEscape(subject)+"/versions/"+version, nil, &got); err != nil {
				return err
			}
			fmt.Fprintf(out, "# subject %s, version %d, id %d\n%s\n", got.Subject, got.Version, got.ID, indentJSON(got.Schema))
			return nil
		},
	}
	cmd.Flags().String("subject", "", "Subject, usually <topic>-value")
	cmd.Flags().String("version", "latest", "Version number, or latest")
	cmd.Flags().Int("id", 0, "Global schema id (the one in the records' wire format)")
	return cmd
}

func schemaListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the subjects with their versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, err := openRegistry(cmd, registryURL(cmd))
			if err != nil {
				return err
			}
			defer rc.close()
			var subjects []string
			if err := rc.call(cmd.Context(), http.MethodGet, "/subjects", nil, &subjects); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(subjects) == 0 {
				fmt.Fprintln(out, "no subjects")
				return nil
			}
			for _, s := range subjects {
				var versions []int
				if err := rc.call(cmd.Context(), http.MethodGet, "/subjects/"+url.PathEscape(s)+"/versions", nil, &versions); err != nil {
					return err
				}
				vs := make([]string, len(versions))
				for i, v := range versions {
					vs[i] = strconv.Itoa(v)
				}
				fmt.Fprintf(out, "%s\tversions %s\n", s, strings.Join(vs, ", "))
			}
			return nil
		},
	}
}

func schemaCheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check --subject S --file new.avsc",
		Short: "Say whether a schema could be registered as the next version of a subject, and if not, why",
		Long: `Ask the registry whether the schema in --file could be registered as the
next version of --subject under the subject's compatibility level, without
registering it. Prints the answer in plain words with the registry's reasons
when it gives them, and exits 1 when the schema is not compatible.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			subject, text, err := subjectAndSchema(cmd)
			if err != nil {
				return err
			}
			rc, err := openRegistry(cmd, registryURL(cmd))
			if err != nil {
				return err
			}
			defer rc.close()
			body, _ := json.Marshal(map[string]string{"schema": text})
			var got struct {
				Compatible bool     `json:"is_compatible"`
				Messages   []string `json:"messages"`
			}
			err = rc.call(cmd.Context(), http.MethodPost,
				"/compatibility/subjects/"+url.PathEscape(subject)+"/versions/latest?verbose=true", body, &got)
			var re *registryAnswer
			if errors.As(err, &re) && (re.Code == 40401 || re.Code == 40402) {
				fmt.Fprintf(cmd.OutOrStdout(), "compatible: %s has no versions yet, so any valid schema can be its first\n", subject)
				return nil
			}
			if err != nil {
				return err
			}
			file, _ := cmd.Flags().GetString("file")
			if got.Compatible {
				fmt.Fprintf(cmd.OutOrStdout(), "compatible: %s can be registered as the next version of %s\n", file, subject)
				return nil
			}
			var b strings.Builder
			fmt.Fprintf(&b, "NOT compatible: the registry would refuse %s as the next version of %s under the subject's compatibility level", file, subject)
			for _, m := range got.Messages {
				fmt.Fprintf(&b, "\n  - %s", m)
			}
			if len(got.Messages) == 0 {
				b.WriteString(" (the registry gave no details)")
			}
			fmt.Fprintln(cmd.OutOrStdout(), b.String())
			return errors.New("schema is not compatible")
		},
	}
	cmd.Flags().String("subject", "", "Subject, usually <topic>-value")
	cmd.Flags().StringP("file", "f", "", "Avro schema file (.avsc)")
	return cmd
}

// registryAnswer is an error answer of the registry.
type registryAnswer struct {
	Status  int
	Code    int    `json:"error_code"`
	Message string `json:"message"`
}

func (e *registryAnswer) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("schema registry: HTTP %d (error code %d): %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("schema registry: HTTP %d: %s", e.Status, e.Message)
}

// registryCall makes one REST call to the registry for the requests the
// schema.Client does not cover (versions by number, listings, verbose
// compatibility) and decodes the JSON answer into out.
func registryCall(ctx context.Context, base, method, path string, body []byte, out any) error {
	rc := &registryConn{url: base, rt: http.DefaultTransport}
	return rc.call(ctx, method, path, body, out)
}

// call is registryCall over the connection's transport (credentials, TLS).
func (rc *registryConn) call(ctx context.Context, method, path string, body []byte, out any) error {
	base := rc.url
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", schema.ContentType+", application/json")
	if body != nil {
		req.Header.Set("Content-Type", schema.ContentType)
	}
	resp, err := (&http.Client{Transport: rc.rt}).Do(req)
	if err != nil {
		return fmt.Errorf("schema registry at %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("schema registry at %s: %w", base, err)
	}
	if resp.StatusCode/100 != 2 {
		a := &registryAnswer{Status: resp.StatusCode}
		if json.Unmarshal(b, a) != nil || a.Message == "" {
			a.Message = strings.TrimSpace(string(b))
			if len(a.Message) > 200 {
				a.Message = a.Message[:200] + "..."
			}
		}
		return a
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("schema registry at %s: %s %s: the answer is not what a registry answers (%v): is the URL right?", base, method, path, err)
	}
	return nil
}

func indentJSON(s string) string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(s), "", "  ") != nil {
		return s
	}
	return b.String()
}
