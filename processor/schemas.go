package processor

// Avro input and output: binding a pipeline to the schema registry at
// start-up.
//
// With source.format avro, records are decoded by a schema.Decoder
// (pinned to source.subject when set). Before anything is read, the
// pipeline's fields (key, event time, aggregate inputs, expressions) are
// checked against the latest schema of the input subject, so a misspelt
// or unusable field stops the pipeline with a clear error instead of
// dead-lettering every record.
//
// With output.format avro, the result schema is derived from the pipeline
// and the input schemas (OutputSchema: counts are longs, a min or max of an
// integer field keeps its type) and registered under "<output topic>-value", and
// the schema of the result keys (a record of the key fields,
// schema.DeriveOutputKey) under "<output topic>-key"; a change the
// subject's compatibility level refuses stops the pipeline at start-up
// with the registry's reason.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/eddy-streams/eddy/internal/backoff"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// avroDecoder is the valueDecoder of source.format avro.
type avroDecoder struct{ d *schema.Decoder }

func (a avroDecoder) DecodeInto(ctx context.Context, value []byte, m map[string]any) (map[string]any, error) {
	return a.d.DecodeInto(ctx, value, m)
}

// inputSubjects returns the subjects whose latest schema the pipeline's
// fields are checked against, and whether the first is pinned.
func inputSubjects(spec *topology.Spec) (subjects []string, pinned bool) {
	if spec.Source.Subject != "" {
		return []string{spec.Source.Subject}, true
	}
	for _, t := range spec.Source.Topics {
		subjects = append(subjects, t+"-value")
	}
	return subjects, false
}

// OutputSubject is the registry subject of a pipeline's Avro results.
func OutputSubject(spec *topology.Spec) string { return spec.Output.Topic + "-value" }

// OutputKeySubject is the registry subject of the keys of a pipeline's
// Avro results.
func OutputKeySubject(spec *topology.Spec) string { return spec.Output.Topic + "-key" }

// OutputKeySchema derives the Avro schema of the keys of a pipeline's
// results: a record of the grouping key fields, as strings.
func OutputKeySchema(spec *topology.Spec) (string, error) {
	return schema.DeriveOutputKey(schema.Output{
		Name:      schema.AvroName(spec.App) + "_key",
		Namespace: "eddy.pipelines",
		Doc:       fmt.Sprintf("Keys of the results of eddy pipeline %q", spec.App),
		KeyFields: spec.Key,
	})
}

// OutputSchema derives the Avro schema of a pipeline's results. Counts
// and distinct counts are longs. A min or max keeps the type of its input
// field when that is an int or long in every input schema (inputs, the
// latest schema of each input subject; nil when the input is JSON or a
// subject has no schema yet: then it is a double). Other aggregates are
// doubles.
func OutputSchema(spec *topology.Spec, inputs []map[string]schema.FieldType) (string, error) {
	return schema.DeriveOutput(outputDesc(spec, resultTypes(spec, inputs)))
}

func outputDesc(spec *topology.Spec, types map[string]string) schema.Output {
	o := schema.Output{
		Name:           schema.AvroName(spec.App) + "_result",
		Namespace:      "eddy.pipelines",
		Doc:            fmt.Sprintf("Results of eddy pipeline %q", spec.App),
		KeyFields:      spec.Key,
		AggregateTypes: types,
	}
	for _, a := range spec.Aggregates {
		o.Aggregates = append(o.Aggregates, a.Name)
	}
	return o
}

// resultTypes gives the Avro type of each aggregate that is not a double;
// see OutputSchema.
func resultTypes(spec *topology.Spec, inputs []map[string]schema.FieldType) map[string]string {
	types := make(map[string]string)
	for _, a := range spec.Aggregates {
		switch a.Op {
		case topology.AggCount, topology.AggDistinct:
			types[a.Name] = "long"
		case topology.AggTopK:
			types[a.Name] = schema.TypeTopK
		case topology.AggMin, topology.AggMax:
			if t := integralType(a.Field, inputs); t != "" {
				types[a.Name] = t
			}
		}
	}
	return types
}

// integralType is "int" when field is an Avro int in every input schema,
// "long" when it is an int or long in each and a long in some, else "".
func integralType(field string, inputs []map[string]schema.FieldType) string {
	t := ""
	for _, in := range inputs {
		f, ok := in[field]
		if !ok || f.Kind != schema.KindInt || f.Avro != "int" && f.Avro != "long" {
			return ""
		}
		if t != "long" {
			t = f.Avro
		}
	}
	return t
}

// outputSchemas are the result schemas eddy tries to register, best
// first: the typed schema (OutputSchema); the same with every min and max
// a double (what a worker that did not yet know the input schema
// registered); every aggregate a double (what eddy before typed results
// registered). A subject whose compatibility level refuses the first (a
// long cannot read the doubles already written) gets the first it accepts,
// so upgrading eddy or learning the input schema late does not stop a
// pipeline; the records then carry the older types.
func outputSchemas(spec *topology.Spec, inputs []map[string]schema.FieldType) ([]string, error) {
	var out []string
	for _, types := range []map[string]string{resultTypes(spec, inputs), resultTypes(spec, nil), topKTypes(spec)} {
		text, err := schema.DeriveOutput(outputDesc(spec, types))
		if err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1] != text {
			out = append(out, text)
		}
	}
	return out, nil
}

// topKTypes gives only the top_k aggregates their type (a list cannot be
// a double, whatever eddy registered before).
func topKTypes(spec *topology.Spec) map[string]string {
	var types map[string]string
	for _, a := range spec.Aggregates {
		if a.Op == topology.AggTopK {
			if types == nil {
				types = make(map[string]string)
			}
			types[a.Name] = schema.TypeTopK
		}
	}
	return types
}

// bindSchemas connects the pipeline to the registry: the decoder and
// start-up field check for Avro input, the encoder for Avro output. A
// registry that cannot be reached is waited for (logged) until ctx ends;
// answers that make the pipeline unusable are returned as errors.
func (p *pipeline) bindSchemas(ctx context.Context, reg schema.Registry, log *slog.Logger, m *metrics) error {
	spec := p.spec
	avroIn := spec.Source.Format == topology.FormatAvro
	avroOut := spec.Output.Format == topology.FormatAvro
	if !avroIn && !avroOut {
		return nil
	}
	if reg == nil {
		return errors.New("the pipeline reads or writes Avro (source.format or output.format avro) and needs a schema registry: pass --registry-url (or set EDDY_REGISTRY_URL)")
	}
	wait := func(what string, fn func() error) error {
		b := backoff.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
		for {
			err := fn()
			// Refused credentials are not waited for: they stay refused.
			if err == nil || !errors.Is(err, schema.ErrRegistryUnavailable) || errors.Is(err, schema.ErrRegistryAuth) {
				m.registryWaiting.Set(0)
				return err
			}
			m.registryWaiting.Set(1)
			d := b.Next()
			log.Warn("waiting for schema registry", "at", "start-up", "for", what, "retry_in", d, "err", err)
			if !backoff.Sleep(ctx, d) {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}

	var inputs []map[string]schema.FieldType // the input schemas' fields, for the result types
	if avroIn {
		subjects, pinned := inputSubjects(spec)
		var opts []schema.DecoderOption
		if pinned {
			opts = append(opts, schema.PinSubject(subjects[0]))
		}
		if fields, all := p.inputFields(); !all {
			opts = append(opts, schema.Project(fields))
		}
		p.dec = avroDecoder{schema.NewDecoder(reg, opts...)}
		known := true
		for _, subject := range subjects {
			var latest *schema.Schema
			err := wait("latest schema of "+subject, func() (err error) {
				latest, err = reg.Latest(ctx, subject)
				return err
			})
			switch {
			case err == nil:
			case errors.Is(err, schema.ErrUnknownSubject) && pinned:
				return fmt.Errorf("source.subject %q has no schema in the registry: register the producers' schema first (eddy schema register --subject %s --file schema.avsc)", subject, subject)
			case errors.Is(err, schema.ErrUnknownSubject):
				log.Warn("no schema registered for the input yet: the pipeline's fields are checked per record only",
					"subject", subject, "fix", "register the producers' schema, or set source.subject")
				known = false
				continue
			default:
				return fmt.Errorf("latest schema of %s: %w", subject, err)
			}
			if err := p.checkSchema(latest); err != nil {
				return err
			}
			inputs = append(inputs, schema.Fields(latest))
			log.Info("input schema checked", "subject", subject, "version", latest.Version, "id", latest.ID)
		}
		if !known {
			inputs = nil // a min or max of a field of unknown type is a double
		}
	}

	if avroOut {
		texts, err := outputSchemas(spec, inputs)
		if err != nil {
			return fmt.Errorf("output.format avro: %w", err)
		}
		keyText, err := OutputKeySchema(spec)
		if err != nil {
			return fmt.Errorf("output.format avro: %w", err)
		}
		register := func(subject, text, what string) (*schema.Encoder, error) {
			var enc *schema.Encoder
			err := wait("register the "+what+" schema under "+subject, func() (err error) {
				enc, err = schema.NewEncoder(ctx, reg, subject, text)
				return err
			})
			switch {
			case err == nil:
				log.Info(what+" schema registered", "subject", subject, "id", enc.ID())
				return enc, nil
			case errors.Is(err, schema.ErrIncompatible):
				return nil, fmt.Errorf("output.format avro: the %s schema cannot be registered under %q: %w\n"+
					"the pipeline's key or aggregates changed in a way the subject's compatibility level refuses: "+
					"write the results to a new output topic, or change the subject's level deliberately", what, subject, err)
			default:
				return nil, fmt.Errorf("output.format avro: register the %s schema under %q: %w", what, subject, err)
			}
		}
		var firstErr error
		for i, text := range texts {
			if p.enc, err = register(OutputSubject(spec), text, "result"); err == nil {
				if i > 0 {
					log.Warn("result schema: the subject's compatibility level refuses the typed results (counts as long, min and max of integers in their own type); writing the types already registered",
						"subject", OutputSubject(spec), "id", p.enc.ID(),
						"fix", "to get the typed results, write them to a new output topic, or set the subject's level to NONE for one start (docs/schemas.md, \"How the result schema evolves\")")
				}
				break
			}
			if firstErr == nil {
				firstErr = err
			}
			if !errors.Is(err, schema.ErrIncompatible) || i == len(texts)-1 {
				return firstErr
			}
		}
		if p.keyEnc, err = register(OutputKeySubject(spec), keyText, "result key"); err != nil {
			return err
		}
		if p.eng.HasAlerts() {
			if p.alertEnc, err = register(AlertSubject(spec), AlertSchema, "alert"); err != nil {
				return err
			}
			if p.alertKeyEnc, err = register(spec.AlertsTopic()+"-key", keyText, "alert key"); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSchema compiles the pipeline's expressions against s and checks
// the fields it uses exist with usable types.
func (p *pipeline) checkSchema(s *schema.Schema) error {
	spec := p.spec
	where := fmt.Sprintf("schema %d", s.ID)
	if s.Subject != "" {
		where = fmt.Sprintf("subject %q version %d (schema id %d)", s.Subject, s.Version, s.ID)
	}
	fields := schema.Fields(s)
	if fields == nil {
		return fmt.Errorf("%s is a %s, not a record: eddy reads records", where, s.Avro.Type())
	}
	types := make(map[string]topology.FieldType, len(fields))
	for name, f := range fields {
		types[name] = fieldType(f.Kind)
	}
	var problems []string
	other := func(path, name string, f schema.FieldType, want string) {
		problems = append(problems, fmt.Sprintf("%s: field %q is Avro %s, %s", path, name, f.Avro, want))
	}
	for i, k := range spec.Key {
		if f, ok := fields[k]; ok && f.Kind == schema.KindOther {
			other(fmt.Sprintf("key[%d]", i), k, f, "but a key field must be a string, number, boolean or timestamp")
		}
	}
	if tf := spec.Time.Field; tf != "" {
		if f, ok := fields[tf]; ok && f.Kind == schema.KindOther {
			other("time.field", tf, f, "but event time must be a timestamp, a number of milliseconds or an RFC 3339 string")
		}
	}
	for i, a := range spec.Aggregates {
		f, ok := fields[a.Field]
		if a.Field == "" || !ok {
			continue
		}
		switch {
		case (a.Op == topology.AggDistinct || a.Op == topology.AggTopK) && f.Kind == schema.KindOther:
			other(fmt.Sprintf("aggregates[%d].field", i), a.Field, f, "but "+a.Op+" counts strings, numbers, booleans or timestamps")
		case a.Op != topology.AggDistinct && a.Op != topology.AggTopK && a.Op != topology.AggCount && f.Kind == schema.KindOther:
			other(fmt.Sprintf("aggregates[%d].field", i), a.Field, f, "but "+a.Op+" needs a number")
		}
	}
	c, err := spec.Compile(types)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("the pipeline does not fit the input schema, %s:\n  %s", where, strings.Join(problems, "\n  "))
	}
	p.compiled = c
	return nil
}

// fieldType maps a schema field kind to the type expressions are checked
// against (topology and schema do not import each other).
func fieldType(k schema.FieldKind) topology.FieldType {
	switch k {
	case schema.KindString:
		return topology.FieldString
	case schema.KindInt:
		return topology.FieldInt
	case schema.KindFloat:
		return topology.FieldFloat
	case schema.KindBool:
		return topology.FieldBool
	case schema.KindTime:
		return topology.FieldTime
	}
	return topology.FieldAny
}
